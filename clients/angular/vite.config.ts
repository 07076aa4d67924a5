import angular from "@analogjs/vite-plugin-angular";
import { defineConfig } from "vite";

// `npm run build:example` writes the example page to dist/ (the tests pass --outDir). Angular's
// compiler (through Analog's plugin) emits what tsconfig.build.json says: tsconfig.json with emit.
export default defineConfig({
  root: "example",
  base: "./",
  plugins: [angular({ tsconfig: new URL("./tsconfig.build.json", import.meta.url).pathname })],
  build: {
    outDir: "../dist",
    emptyOutDir: true,
    // The compiler's plugin is most of the build's time, as expected: no warning about it.
    rolldownOptions: { checks: { pluginTimings: false } },
  },
});
