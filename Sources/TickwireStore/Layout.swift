import TickwireCore

/// One partition: the events of one trading date (the UTC date of their event time) and one root — the venue
/// of market data (`MD.XNAS`) or the first token of any other subject (`ALERT`, `TRADE`).
public struct PartitionKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Days since 1970-01-01, UTC.
    public let day: Int64
    /// `MD.<VENUE>` for market data, the root token otherwise.
    public let root: String

    public init(day: Int64, root: String) { self.day = day; self.root = root }

    /// `2019-12-30`.
    public var date: String { Layout.dateText(day: day) }
    /// Where it lives under the store directory: `2019-12-30/MD.XNAS`.
    public var relativePath: String { "\(date)/\(root)" }
    public var description: String { relativePath }

    public static func < (a: PartitionKey, b: PartitionKey) -> Bool { (a.day, a.root) < (b.day, b.root) }
}

public enum Layout {
    static func day(of t: Int64) -> Int64 {
        t >= 0 ? t / Nanos.perDay : (t &+ 1) / Nanos.perDay &- 1
    }

    static func dateText(day: Int64) -> String {
        let (y, m, d) = Nanos.civil(fromDays: day)
        func pad(_ v: Int64, _ w: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))"
    }

    static func day(fromDateText s: String) -> Int64? {
        guard s.utf8.count == 10, let t = try? Nanos(parsing: s) else { return nil }
        return day(of: t.rawValue)
    }

    /// The partition root of a subject: its first two tokens for `MD.` subjects, its first token otherwise.
    static func root(ofSubject text: UnsafeRawBufferPointer) -> String {
        let dot = UInt8(ascii: ".")
        guard let first = text.firstIndex(of: dot) else { return String(decoding: text, as: UTF8.self) }
        let isMD = first == 2 && text[0] == UInt8(ascii: "M") && text[1] == UInt8(ascii: "D")
        if isMD, let second = text[(first + 1)...].firstIndex(of: dot) {
            return String(decoding: UnsafeRawBufferPointer(rebasing: text[..<second]), as: UTF8.self)
        }
        return String(decoding: UnsafeRawBufferPointer(rebasing: text[..<first]), as: UTF8.self)
    }

    static func root(ofSubject text: String) -> String {
        var t = text
        return t.withUTF8 { root(ofSubject: UnsafeRawBufferPointer($0)) }
    }

    /// All tokens but the last: the part a TRADE, its QUOTE and its BUST share (`MD.XNAS.AAPL`).
    static func stem(_ subject: String) -> Substring {
        guard let dot = subject.utf8.lastIndex(of: UInt8(ascii: ".")) else { return Substring(subject) }
        return subject[..<dot]
    }

    static func logName(_ generation: UInt64) -> String { "open-\(padded(generation)).log" }
    static func segmentName(_ generation: UInt64) -> String { "sealed-\(padded(generation))" }
    static func chunkName(_ generation: UInt64) -> String { "chunk-\(padded(generation))" }

    static func padded(_ g: UInt64) -> String {
        let s = String(g)
        return String(repeating: "0", count: max(0, 8 - s.count)) + s
    }

    /// What a partition directory holds: its newest sealed segment, its sealed chunks, its append logs, leftovers
    /// of a crash. A sealed segment `sealed-G` absorbs every log and chunk of generation G or lower; a chunk
    /// `chunk-G` absorbs the one log `open-G.log`.
    struct PartitionFiles {
        var sealedGeneration: UInt64?
        var staleSegments: [String] = []
        var logGenerations: [UInt64] = []
        var chunkGenerations: [UInt64] = []
        var temporaries: [String] = []

        private func unabsorbed(_ g: UInt64) -> Bool { sealedGeneration.map { g > $0 } ?? true }
        /// Sealed chunks not absorbed by the sealed segment, in generation (arrival) order.
        var liveChunks: [UInt64] { chunkGenerations.filter(unabsorbed) }
        /// Logs absorbed neither by the sealed segment nor by a chunk.
        var liveLogs: [UInt64] {
            let chunks = Set(chunkGenerations)
            return logGenerations.filter { unabsorbed($0) && !chunks.contains($0) }
        }
        var absorbedLogs: [UInt64] {
            let chunks = Set(chunkGenerations)
            return logGenerations.filter { !unabsorbed($0) || chunks.contains($0) }
        }
        var absorbedChunks: [UInt64] { chunkGenerations.filter { !unabsorbed($0) } }
        var nextGeneration: UInt64 {
            max(sealedGeneration ?? 0, logGenerations.max() ?? 0, chunkGenerations.max() ?? 0) + 1
        }
    }

    static func inspect(_ dir: String) -> PartitionFiles {
        var files = PartitionFiles()
        var segments = [UInt64]()
        for name in FS.list(dir) {
            if name.hasSuffix(".tmp") { files.temporaries.append(name); continue }
            if name.hasPrefix("sealed-"), let g = UInt64(name.dropFirst(7)) { segments.append(g) }
            if name.hasPrefix("chunk-"), let g = UInt64(name.dropFirst(6)) { files.chunkGenerations.append(g) }
            if name.hasPrefix("open-"), name.hasSuffix(".log"), let g = UInt64(name.dropFirst(5).dropLast(4)) {
                files.logGenerations.append(g)
            }
        }
        segments.sort()
        files.sealedGeneration = segments.last
        files.staleSegments = segments.dropLast().map(segmentName)
        files.logGenerations.sort()
        files.chunkGenerations.sort()
        return files
    }

    /// Removes what a crash during sealing can leave: temporaries, logs and chunks already absorbed, superseded
    /// segments. Only the store's one writer (or its sealer) calls it: a reader never writes.
    static func cleanUp(_ dir: String) throws(StoreError) -> PartitionFiles {
        var files = inspect(dir)
        let garbage = files.temporaries + files.staleSegments + files.absorbedLogs.map(logName)
            + files.absorbedChunks.map(chunkName)
        guard !garbage.isEmpty else { return files }
        for name in garbage { try FS.removeTree(dir + "/" + name) }
        try FS.syncDirectory(dir)
        files.temporaries = []
        files.staleSegments = []
        files.logGenerations = files.liveLogs
        files.chunkGenerations = files.liveChunks
        return files
    }

    /// Sealed chunks not yet absorbed, over every partition of a store (for reports).
    public static func chunkCount(_ store: String) -> Int {
        partitions(in: store).reduce(0) { $0 + inspect(store + "/" + $1.relativePath).liveChunks.count }
    }

    /// Every partition under a store directory, in (date, root) order.
    static func partitions(in directory: String) -> [PartitionKey] {
        var keys = [PartitionKey]()
        for date in FS.list(directory) {
            guard let day = day(fromDateText: date), FS.isDirectory(directory + "/" + date) else { continue }
            for root in FS.list(directory + "/" + date) where FS.isDirectory(directory + "/" + date + "/" + root) {
                keys.append(PartitionKey(day: day, root: root))
            }
        }
        return keys.sorted()
    }
}

/// Which partition an event goes to (the UTC date of its event time, its subject's root), for one thread that
/// routes a stream of events: the store writer, an import. Most events go to the previous event's partition,
/// found with two comparisons instead of a division; each subject's root is looked up once.
struct PartitionRouter {
    private let subjects: SubjectTable
    /// Global SubjectID -> index into `roots` + 1 (0: not yet looked at).
    private var rootOf: [Int32] = []
    private var roots: [String] = []
    /// The current partition's date range and root, and the one `key(for:hasCurrent:)` last returned.
    private var dayStart = Int64.max, dayEnd = Int64.min, root: Int32 = -1
    private var candidate: (day: Int64, root: Int32) = (0, -1)

    init(subjects: SubjectTable) { self.subjects = subjects }

    /// The key of `e`'s partition when it is not the current one (or the caller has none: `hasCurrent` false);
    /// nil when it is. `enter()` makes the returned one current once the caller has it.
    @inline(__always)
    mutating func key(for e: Event, hasCurrent: Bool) -> PartitionKey? {
        let id = Int(e.subjectID)
        let r = id < rootOf.count && rootOf[id] != 0 ? rootOf[id] - 1 : learnRoot(id)
        let t = e.eventTime.rawValue
        guard t < dayStart || t >= dayEnd || r != root || !hasCurrent else { return nil }
        let day = Layout.day(of: t)
        candidate = (day, r)
        return PartitionKey(day: day, root: roots[Int(r)])
    }

    /// The partition `key(for:hasCurrent:)` last returned is the current one.
    mutating func enter() {
        dayStart = candidate.day &* Nanos.perDay
        dayEnd = candidate.day == Int64.max / Nanos.perDay ? .max : dayStart &+ Nanos.perDay
        root = candidate.root
    }

    private mutating func learnRoot(_ id: Int) -> Int32 {
        let root = Layout.root(ofSubject: subjects.entry(SubjectID(id)))
        let index: Int32
        if let i = roots.firstIndex(of: root) { index = Int32(i) } else { index = Int32(roots.count); roots.append(root) }
        if id >= rootOf.count { rootOf.append(contentsOf: repeatElement(0, count: id + 1 - rootOf.count)) }
        rootOf[id] = index + 1
        return index
    }
}
