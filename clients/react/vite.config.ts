import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// `npm run build:example` writes the example page to dist/ (the tests pass --outDir).
export default defineConfig({
  root: "example",
  base: "./",
  plugins: [react()],
  build: { outDir: "../dist", emptyOutDir: true },
});
