/**
 * Helpers every concern needs and none owns: the one abortable sleep, the one `exists`, the
 * one routine that sets a damaged store aside.
 */
export * from "./sleep.ts";
export * from "./fs.ts";
export * from "./gc.ts";
