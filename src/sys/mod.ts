/**
 * The operating system as the project sees it: one libc binding, one errno table with
 * {@link toErrno}, one /proc/self/mountinfo parser. fuse, fs, cas and daemon all import these.
 */
export * from "./libc.ts";
export * from "./errno.ts";
export * from "./mountinfo.ts";
