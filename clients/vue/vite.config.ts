import vue from "@vitejs/plugin-vue";
import { defineConfig } from "vite";

// `npm run build:example` writes the example page to dist/ (the tests pass --outDir).
export default defineConfig({
  root: "example",
  base: "./",
  plugins: [vue()],
  build: { outDir: "../dist", emptyOutDir: true },
});
