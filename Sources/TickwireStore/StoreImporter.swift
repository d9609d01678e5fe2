import CXXHash
import TickwireCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Loads a capture straight into the store, without a daemon: drives any `EventSource` (ITCH, tardis CSV,
/// LOBSTER…) into a `StoreWriter`, then seals what it wrote.
///
/// An import is one transaction (docs/STORAGE.md, "Imports"): it is written and sealed in a staging directory
/// of its own, and only a complete import is published into the store's partitions (each piece renamed in as
/// a sealed chunk, the list of renames made durable first so that a crash mid-publish is completed on the next
/// open). A failed or killed import leaves nothing in the store. An import with an identity (the file's bytes
/// and how they are read) is recorded once done, and importing the same identity again stores nothing.
public enum StoreImporter {
    public struct Report: Sendable, Equatable {
        public var events: UInt64
        /// The partitions the import stored into (sealed afterwards when `seal`).
        public var sealed: [PartitionKey]
        /// Set when the identity was imported before: what that import recorded. Nothing was stored this time.
        public var alreadyImported: String?
    }

    /// What makes two imports the same: the kind of source and its options, and the file's bytes (size and
    /// XXH3-128 of the content).
    ///
    /// The content is hashed on a thread of its own, started here, so that it runs beside the import's parse
    /// instead of before it (docs/BENCH-HISTORY.md, T2); `key` waits for it. The kind and the size, known at
    /// once, begin the key: an import whose kind and size no import recorded cannot have been done before.
    public struct Identity: Sendable, Equatable {
        public let name: String
        /// The key's start: the kind's hash and the file's size.
        let prefix: String
        let path: String
        /// The content's digest, computed on a thread of its own.
        private let digest: BackgroundValue<Result<String, StoreError>>

        /// Opens the file and starts hashing it.
        /// - Parameters:
        ///   - kind: how the file is read (`tardis-trades`, `itch` and its trading date…).
        /// - Throws: `StoreError.io` when the file cannot be read.
        public init(kind: String, path: String) throws(StoreError) {
            let file = try OwnedFile(path: path, flags: O_RDONLY)
            let size = try file.size()
            let kindHash = Array(kind.utf8).withUnsafeBytes { CRC32C.of($0) }
            prefix = "\(Self.hex(kindHash))-\(Self.hex(UInt64(size)))-"
            digest = BackgroundValue { Result { () throws(StoreError) in try Identity.contentDigest(file) } }
            name = "\(kind) \(path)"
            self.path = path
        }

        /// `<kind hash>-<size>-x<XXH3-128>`, in hex: the name of the import's record.
        /// - Throws: `StoreError.io` when reading the file for its hash failed.
        public func key() throws(StoreError) -> String { prefix + (try digest.value.get()) }

        /// The key an import of the same file and kind recorded before XXH3 (`<kind hash>-<size>-<CRC-32C>-<hash>`):
        /// a store written then knows its imports by it. Maps and hashes the file again (only when a record of
        /// that form begins with `prefix`).
        func legacyKey() throws(StoreError) -> String {
            let map = try MappedFile(path: path)
            return prefix + Identity.legacyDigest(map.bytes)
        }

        public static func == (a: Identity, b: Identity) -> Bool { a.name == b.name && (try? a.key()) == (try? b.key()) }

        static func hex<T: FixedWidthInteger>(_ v: T) -> String {
            let s = String(v, radix: 16)
            return String(repeating: "0", count: max(0, MemoryLayout<T>.size * 2 - s.count)) + s
        }

        /// The content's XXH3-128, in hex after an `x` (which tells it from the legacy digest's CRC).
        static func contentDigest(_ p: UnsafeRawBufferPointer) -> String {
            digestText(XXH3_128bits(p.baseAddress, p.count))
        }

        /// `contentDigest` of the file's bytes, read 1 MiB at a time into one buffer: no mapping to fault in and
        /// take down, and no second copy of the file in the resident size; ~20% less CPU than hashing a mapping
        /// (docs/BENCH-HISTORY.md, T4), on a thread that shares the cores with the parse's two.
        static func contentDigest(_ file: OwnedFile) throws(StoreError) -> String {
            let state = XXH3_createState()!
            defer { XXH3_freeState(state) }
            XXH3_128bits_reset(state)
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
            defer { buffer.deallocate() }
            var offset: off_t = 0
            while true {
                let n = pread(file.fd, buffer.baseAddress, buffer.count, offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw .io(operation: "read", path: file.path, errno: errno)
                }
                if n == 0 { break }
                XXH3_128bits_update(state, buffer.baseAddress, n)
                offset += off_t(n)
            }
            return digestText(XXH3_128bits_digest(state))
        }

        private static func digestText(_ h: XXH128_hash_t) -> String { "x" + hex(h.high64) + hex(h.low64) }

        /// The digest of keys recorded before XXH3: the content's CRC-32C and a 64-bit multiplicative hash of its
        /// 8-byte words then its tail bytes, in hex. Only a store holding such a record reads a file for it.
        static func legacyDigest(_ p: UnsafeRawBufferPointer) -> String {
            var h: UInt64 = 0x9E37_79B9_7F4A_7C15
            let words = p.count / 8
            for i in 0..<words {
                h = (h ^ p.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) &* 0xFF51_AFD7_ED55_8CCD
                h ^= h >> 29
            }
            for i in (words * 8)..<p.count { h = (h ^ UInt64(p[i])) &* 0xC4CE_B9FE_1A85_EC53 }
            let crc = CRC32C.of(p)
            return "\(hex(crc))-\(hex(h))"
        }
    }

    /// - Parameters:
    ///   - source: the capture; it interns its subjects in `subjects`.
    ///   - directory: the store's root (`<data>/store`).
    ///   - identity: when given, an import of the same identity done before makes this one store nothing.
    ///   - seal: seal the partitions afterwards (the default); false leaves the imported pieces as chunks.
    ///   - heldRows: rows held in memory at most (past it, the largest partition held is sealed as a chunk):
    ///     bounds memory whatever the file's size. A date with fewer rows is encoded once, whole.
    /// - Throws: the source's error, or `StoreError` from writing; nothing of this import is then in the store.
    @discardableResult
    public static func importEvents(from source: EventSource, directory: String, subjects: SubjectTable = SubjectTable(),
                                    identity: Identity? = nil, seal: Bool = true, heldRows: Int = 16_000_000,
                                    compactRows: Int = 16_000_000, stop: StopSignal = StopSignal()) throws -> Report {
        // Holds the store's writer lock for the whole import: no daemon or other import writes meanwhile.
        let owner = try StoreWriter(directory: directory, subjects: SubjectTable())
        defer { try? owner.close() }
        try recover(store: directory)
        // Without a record of this kind and size the file is new, and its hash runs beside the parse; with one,
        // the hash is waited for first, so that a file imported before is not read again.
        if let identity, let done = try doneRecord(directory, identity) {
            return Report(events: 0, sealed: [], alreadyImported: done)
        }
        let staging = directory + "/" + stagingPrefix + String(UInt64(bitPattern: Nanos.now().rawValue), radix: 16)
        try FS.removeTree(staging)
        var published = false
        defer { if !published { try? FS.removeTree(staging) } }
        try FS.makeDirectories(staging)
        let stager = ImportStager(directory: staging, subjects: subjects, heldRows: heldRows, compactRows: compactRows,
                                  stop: stop)
        var sourceError: Error?
        do { try source.run(into: stager, stop: stop) } catch { sourceError = error }
        if let e = stager.error { throw e }
        if let e = sourceError { throw e }
        if stop.isRaised { throw StoreError.badEvent(reason: "the import was interrupted; nothing was stored") }
        try stager.finish()
        let keys = Layout.partitions(in: staging)
        let record = "\(identity?.name ?? "import"): \(stager.appended) events into \(keys.count) partition\(keys.count == 1 ? "" : "s"), "
            + "stored \(Nanos.now().iso8601)"
        let done = try identity.map { (i) throws(StoreError) in doneFile(directory, try i.key()) }
        try publish(staging: staging, store: directory, keys: keys, done: done, record: record)
        published = true
        if seal {
            for key in keys { try Sealing.seal(store: directory, key: key, compactRows: compactRows, report: StoreWriter.printToStandardError) }
        }
        return Report(events: stager.appended, sealed: keys, alreadyImported: nil)
    }

    static let stagingPrefix = ".import-"
    static func importsDirectory(_ store: String) -> String { store + "/imports" }
    static func doneFile(_ store: String, _ key: String) -> String { importsDirectory(store) + "/" + key + ".done" }
    /// The records whose name begins with the identity's kind and size: only these may be an import of it.
    static func records(_ store: String, _ identity: Identity) -> [String] {
        FS.list(importsDirectory(store)).filter { $0.hasPrefix(identity.prefix) && $0.hasSuffix(".done") }
    }
    static func mayBeDone(_ store: String, _ identity: Identity) -> Bool { !records(store, identity).isEmpty }

    /// The record of an import of `identity` done before, under its key or, for a store written before XXH3,
    /// its legacy key; nil when there is none.
    static func doneRecord(_ store: String, _ identity: Identity) throws(StoreError) -> String? {
        let names = records(store, identity)
        guard !names.isEmpty else { return nil }
        if let done = try? readText(doneFile(store, try identity.key())) { return done }
        guard names.contains(where: { !$0.dropFirst(identity.prefix.count).hasPrefix("x") }) else { return nil }
        return try? readText(doneFile(store, try identity.legacyKey()))
    }
    static var pendingName: String { "publish.pending" }

    /// Moves every sealed piece of the staged partitions into the store as new chunks. The plan (each rename, and
    /// the record to write when done) is made durable first; `recover` completes a plan a crash interrupted.
    static func publish(staging: String, store: String, keys: [PartitionKey], done: String?, record: String) throws(StoreError) {
        try writePlan(staging: staging, store: store, keys: keys, done: done, record: record)
        try complete(store: store)
    }

    /// Makes the plan of a publish durable: every rename, the record and where it goes. - Returns: the renames.
    @discardableResult
    static func writePlan(staging: String, store: String, keys: [PartitionKey], done: String?,
                          record: String) throws(StoreError) -> [(String, String)] {
        var plan = [(String, String)]()
        for key in keys {
            let from = staging + "/" + key.relativePath, to = store + "/" + key.relativePath
            try FS.makeDirectories(to)
            let files = Layout.inspect(from)
            var next = Layout.inspect(to).nextGeneration
            for name in (files.sealedGeneration.map { [Layout.segmentName($0)] } ?? []) + files.liveChunks.map(Layout.chunkName) {
                plan.append((from + "/" + name, to + "/" + Layout.chunkName(next)))
                next += 1
            }
        }
        try FS.makeDirectories(importsDirectory(store))
        var text = "done\t\(done ?? "")\nrecord\t\(record)\nstaging\t\(staging)\n"
        for (a, b) in plan { text += "rename\t\(a)\t\(b)\n" }
        let pending = importsDirectory(store) + "/" + pendingName
        try FS.writeDurably(pending + ".tmp", Array(text.utf8))
        try FS.rename(pending + ".tmp", pending)
        try FS.syncDirectory(importsDirectory(store))
        return plan
    }

    /// Carries out the durable plan of an interrupted publish (each rename not yet done), records the import as
    /// done, and removes the plan and the staging directory; then removes staging directories a killed import
    /// left without a plan. Called before every import.
    public static func recover(store: String) throws(StoreError) {
        if FS.exists(importsDirectory(store) + "/" + pendingName) { try complete(store: store) }
        for name in FS.list(store) where name.hasPrefix(stagingPrefix) { try FS.removeTree(store + "/" + name) }
        try? FS.remove(importsDirectory(store) + "/" + pendingName + ".tmp")
    }

    private static func complete(store: String) throws(StoreError) {
        let pending = importsDirectory(store) + "/" + pendingName
        var done = "", record = "", staging = ""
        var dirs = Set<String>()
        for line in try readText(pending).split(separator: "\n") {
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            switch f.first {
            case "done": done = f.count > 1 ? f[1] : ""
            case "record": record = f.count > 1 ? f[1] : ""
            case "staging": staging = f.count > 1 ? f[1] : ""
            case "rename" where f.count == 3:
                if FS.exists(f[1]) && !FS.exists(f[2]) { try FS.rename(f[1], f[2]) }
                dirs.insert(String(f[2][..<f[2].lastIndex(of: "/")!]))
            default: throw .corrupt(path: pending, offset: 0, reason: "an unknown line '\(line)'")
            }
        }
        for d in dirs.sorted() { try FS.syncDirectory(d); try FS.syncDirectory(d + "/..") }
        try FS.syncDirectory(store)
        if !done.isEmpty { try FS.writeDurably(done, Array((record + "\n").utf8)) }
        try FS.remove(pending)
        try FS.syncDirectory(importsDirectory(store))
        if !staging.isEmpty { try FS.removeTree(staging) }
    }

    static func readText(_ path: String) throws(StoreError) -> String {
        let m = try MappedFile(path: path)
        return String(decoding: m.bytes, as: UTF8.self)
    }
}
