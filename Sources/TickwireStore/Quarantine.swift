import TickwireCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where damaged logs go: nothing the store finds damaged is deleted. A damaged log is kept whole in the store's
/// `quarantine/` folder for an operator (docs/STORAGE.md, "Damage and quarantine"); the store never deletes
/// anything there.
enum Quarantine {
    static func directory(store: String) -> String { store + "/quarantine" }

    /// Keeps a log whole in `quarantine/` as `DATE.ROOT.open-G.log.STAMP` (a hard link: the bytes stay exactly
    /// as found, and removing or replacing the log later leaves them there). A log already linked there (an
    /// attempt that failed or crashed after linking) is not linked again.
    /// - Returns: the quarantined copy's path.
    static func keep(log path: String, store: String, key: PartitionKey) throws(StoreError) -> String {
        let dir = directory(store: store)
        try FS.makeDirectories(dir)
        let prefix = "\(key.date).\(key.root).\(path.split(separator: "/").last.map(String.init) ?? path)."
        var log = stat()
        guard stat(path, &log) == 0 else { throw .io(operation: "stat", path: path, errno: errno) }
        for name in FS.list(dir) where name.hasPrefix(prefix) {
            var copy = stat()
            if stat(dir + "/" + name, &copy) == 0, copy.st_dev == log.st_dev, copy.st_ino == log.st_ino { return dir + "/" + name }
        }
        let copy = dir + "/" + prefix + String(Nanos.now().rawValue)
        guard link(path, copy) == 0 else { throw .io(operation: "link into quarantine", path: path, errno: errno) }
        try FS.syncDirectory(dir)
        return copy
    }

    /// Keeps a damaged log whole in `quarantine/`, then replaces it by its intact blocks, re-encoded (written to
    /// a temporary file, synced, renamed over the log): the blocks after the damage stay readable and new blocks
    /// can be appended. A crash before the rename leaves the damaged log in place, to be set aside again on the
    /// next open; after it, the new log.
    /// - Returns: the quarantined copy's path, and the new log's subjects by log-local id.
    static func replaceByIntactBlocks(log path: String, _ contents: AppendLog.Contents, store: String,
                                      key: PartitionKey, blockEvents: Int) throws(StoreError) -> (copy: String, subjects: [String]) {
        let copy = try keep(log: path, store: store, key: key)
        let intact = AppendLog.encode(contents.events, subjects: contents.subjects, blockEvents: blockEvents)
        try FS.writeDurably(path + ".tmp", intact.bytes)
        try FS.rename(path + ".tmp", path)
        try FS.syncDirectory(store + "/" + key.relativePath)
        return (copy, intact.subjects)
    }
}
