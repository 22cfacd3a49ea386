/**
 * The virtual tree of musicfs (SPEC.md section 2): names, the `--layout` template of the
 * /Artists view, and the in-memory tree the FUSE operations serve.
 *
 * @module
 */
export type { Origin, Playlist, Problem, Tags, TrackRecord } from "../library/mod.ts";
export type {
  Attr,
  DirEntry,
  Entry,
  FuseOperations,
  OpenResult,
  RequestContext,
  StatFs,
} from "../fuse/mod.ts";
export {
  type Collision,
  type CoverImage,
  type CoverNode,
  type DirNode,
  EMPTY_TREE_STATS,
  type GeneratedNode,
  INO,
  type Invalidation,
  type NameRow,
  type NameRowChange,
  type Node,
  type SymlinkNode,
  TRACK_INO_BASE,
  type TrackNode,
  type TreeEntry,
  type TreeOptions,
  type TreeStats,
  VirtualTree,
} from "./tree.ts";
export type { RowCursor } from "./rows.ts";
export {
  DEFAULT_LAYOUT,
  type Layout,
  LAYOUT_FIELDS,
  LayoutError,
  type LayoutField,
  type LayoutPart,
  type LayoutTrack,
  parseLayout,
  renderLayout,
} from "./layout.ts";
export {
  albumArtistName,
  albumFolder,
  albumName,
  artistName,
  cutUtf8,
  discCount,
  fitName,
  foldKey,
  genreName,
  MAX_NAME_BYTES,
  type NameClaim,
  type NamePart,
  resolveCollisions,
  sanitizeName,
  titleName,
  trackFileName,
  trackStem,
  UNKNOWN_ALBUM,
  UNKNOWN_ARTIST,
  UNKNOWN_GENRE,
  UNKNOWN_YEAR,
  utf8Length,
  withCollisionSuffix,
  yearText,
} from "./naming.ts";
export {
  type Access,
  AccessTally,
  dirAccess,
  fileAccess,
  PRIVATE_DIR_MODE,
  SHARED_SEARCH_MODE,
} from "./access.ts";
export { escapeControl } from "./escape.ts";
export {
  type CachedFile,
  type CacheRoute,
  MusicOps,
  type MusicOpsOptions,
  SEARCH_QUERY_MAX_BYTES,
  SEARCH_RESULTS_MAX,
  type SourceFault,
} from "./ops.ts";
export {
  isInside,
  type OpenedSource,
  SourceOpener,
  type SourceOpenerOptions,
  SourceOpenError,
  type SourceVersion,
} from "./source_open.ts";
