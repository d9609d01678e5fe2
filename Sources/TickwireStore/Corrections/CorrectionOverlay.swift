import TickwireCore

/// A partition's rows with its corrections applied as versions: every base row kept, each correction adding the
/// version it makes (known from the correction's known time) and ending the one it replaces (docs/STORAGE.md,
/// "Corrections"). Read through a segment built from it, the store's usual as-known-at-K test then shows each
/// event in the version current at K.
struct CorrectionOverlay {
    /// Where an identity stands now.
    enum State: Equatable { case absent, row(Int), deleted }

    private(set) var subjects: [String]
    private var subjectIndex: [String: UInt32]
    /// Base rows (in segment order: subject, event time, known time, arrival), then the versions corrections made.
    private(set) var events: [Event]
    let baseCount: Int
    /// Each subject's base rows (indices into `events`).
    private let baseRanges: [Range<Int>]
    /// Valid-until times corrections gave rows (event index -> the known time their next version or deletion).
    private(set) var ends: [Int: Int64] = [:]
    /// Every corrected (or inserted) identity's state.
    private var states: [EventIdentity: State] = [:]
    /// The identity each row made by a correction is a version of.
    private var identityOfRow: [Int: EventIdentity] = [:]
    /// Events inserted by corrections, by subject and event time.
    private var inserted: [SubjectTime: [EventIdentity]] = [:]
    private struct SubjectTime: Hashable { let subject: String; let eventTime: Nanos }
    /// Each identity's versions in order: the base row (if any), then one per correction (nil: a deletion).
    private(set) var history: [EventIdentity: [(record: CorrectionRecord?, row: Int?)]] = [:]

    init(base: SegmentReader?) {
        var events = [Event]()
        base?.allEvents(into: &events)
        subjects = base?.subjects ?? []
        subjectIndex = [:]
        for (i, s) in subjects.enumerated() { subjectIndex[s] = UInt32(i) }
        baseRanges = base?.ranges.map { $0.firstRow..<($0.firstRow + $0.rowCount) } ?? []
        self.events = events
        baseCount = events.count
    }

    private mutating func subjectID(_ s: String) -> UInt32 {
        if let i = subjectIndex[s] { return i }
        subjects.append(s)
        subjectIndex[s] = UInt32(subjects.count - 1)
        return UInt32(subjects.count - 1)
    }

    /// The base rows of a subject at one event time, in segment order.
    func baseRows(subject: String, eventTime: Int64) -> Range<Int> {
        guard let s = subjectIndex[subject], Int(s) < baseRanges.count else { return 0..<0 }
        let r = baseRanges[Int(s)]
        var lo = r.lowerBound, hi = r.upperBound
        while lo < hi { let m = (lo + hi) / 2; if events[m].eventTime.rawValue < eventTime { lo = m + 1 } else { hi = m } }
        var end = lo
        while end < r.upperBound && events[end].eventTime.rawValue == eventTime { end += 1 }
        return lo..<end
    }

    /// A base row's identity: its ordinal counts the earlier rows of the same subject, event and known time.
    func identity(ofBaseRow i: Int) -> EventIdentity {
        let e = events[i]
        let run = baseRows(subject: subjects[Int(e.subjectID)], eventTime: e.eventTime.rawValue)
        let ordinal = run.lowerBound..<i
        return EventIdentity(subject: subjects[Int(e.subjectID)], eventTime: e.eventTime, knownTime: e.knownTime,
                             ordinal: UInt32(ordinal.filter { events[$0].knownTime == e.knownTime }.count))
    }

    func identity(ofRow i: Int) -> EventIdentity { i < baseCount ? identity(ofBaseRow: i) : identityOfRow[i]! }

    /// The base row an identity names, if the partition holds it.
    func baseRow(_ id: EventIdentity) -> Int? {
        var n: UInt32 = 0
        for i in baseRows(subject: id.subject, eventTime: id.eventTime.rawValue) where events[i].knownTime == id.knownTime {
            if n == id.ordinal { return i }
            n += 1
        }
        return nil
    }

    func state(_ id: EventIdentity) -> State {
        if let s = states[id] { return s }
        return baseRow(id).map { .row($0) } ?? .absent
    }

    /// The corrections made so far name this identity (an insert's identity counts once it is made).
    func isKnown(_ id: EventIdentity) -> Bool { states[id] != nil || baseRow(id) != nil }

    /// The values of an identity's latest version (for a deleted event, the one before its deletion).
    func latestValues(_ id: EventIdentity) -> EventValues? {
        if case .row(let r) = state(id) { return EventValues(events[r]) }
        return history[id]?.last(where: { $0.row != nil }).map { EventValues(events[$0.row!]) }
    }

    /// The known time of an identity's current version (nil when deleted or absent).
    func currentKnownTime(_ id: EventIdentity) -> Nanos? {
        if case .row(let r) = state(id) { return events[r].knownTime }
        return nil
    }

    /// Identities stored or inserted at one subject and event time: base rows, then inserted events.
    func identities(subject: String, eventTime: Nanos) -> [EventIdentity] {
        baseRows(subject: subject, eventTime: eventTime.rawValue).map { identity(ofBaseRow: $0) }
            + (inserted[SubjectTime(subject: subject, eventTime: eventTime)] ?? [])
    }

    private mutating func end(_ row: Int, at k: Int64) { ends[row] = min(ends[row] ?? .max, k) }

    private mutating func addVersion(_ id: EventIdentity, _ v: EventValues, at k: Nanos) -> Int {
        let sid = subjectID(id.subject)
        events.append(v.event(subjectID: sid, eventTime: id.eventTime, knownTime: k))
        identityOfRow[events.count - 1] = id
        return events.count - 1
    }

    /// Applies one record. - Returns: why it cannot apply (its event is missing or already deleted), or nil.
    @discardableResult
    mutating func apply(_ r: CorrectionRecord) -> String? {
        let id = r.target, k = r.knownTime.rawValue
        let before = state(id)
        if history[id] == nil, case .row(let base) = before, base < baseCount { history[id] = [(nil, base)] }
        switch (r.change, before) {
        case (.insert(let v), .absent):
            let row = addVersion(id, v, at: r.knownTime)
            states[id] = .row(row)
            history[id, default: []].append((r, row))
            inserted[SubjectTime(subject: id.subject, eventTime: id.eventTime), default: []].append(id)
        case (.insert, _):
            return "an event \(id) is already stored"
        case (.replace, .absent), (.delete, .absent):
            return "no stored event \(id)"
        case (.delete, .deleted):
            return "event \(id) is already deleted"
        case (.replace(let v), _):
            var oldBust: Event?
            if case .row(let old) = before {
                end(old, at: k)
                if events[old].kind == .bust && v.c != events[old].c { oldBust = events[old] }
            }
            let row = addVersion(id, v, at: r.knownTime)
            states[id] = .row(row)
            history[id, default: []].append((r, row))
            if let b = oldBust { restoreTrade(voidedBy: b, subject: id.subject, at: k) }
        case (.delete, .row(let old)):
            end(old, at: k)
            states[id] = .deleted
            history[id, default: []].append((r, nil))
            if events[old].kind == .bust { restoreTrade(voidedBy: events[old], subject: id.subject, at: k) }
        }
        return nil
    }

    /// A BUST withdrawn at `k` (deleted, or pointed at another trade id) stops voiding its trade: the trade's
    /// version current just before `k` is shown again from `k`, as a new version of that trade.
    private mutating func restoreTrade(voidedBy bust: Event, subject: String, at k: Int64) {
        let stem = Layout.stem(subject)
        var best: Int?
        for i in events.indices where events[i].kind == .trade && events[i].c == bust.c && events[i].knownTime.rawValue < k
            && Layout.stem(subjects[Int(events[i].subjectID)]) == stem && (ends[i] ?? .max) > k {
            if best == nil || events[i].knownTime > events[best!].knownTime { best = i }
        }
        guard let row = best else { return }
        let id = identity(ofRow: row)
        if case .deleted = state(id) { return }
        if history[id] == nil, row < baseCount { history[id] = [(nil, row)] }
        end(row, at: k)
        let copy = addVersion(id, EventValues(events[row]), at: Nanos(k))
        states[id] = .row(copy)
        history[id, default: []].append((nil, copy))
    }

    /// The partition as a segment to read: base rows and versions, versions resolved as sealing does, plus the
    /// ends corrections gave.
    func segment(generation: UInt64, path: String) throws(StoreError) -> SegmentReader {
        let image = SegmentImage.build(subjects: subjects, events: events, generation: generation, ends: ends)
        return try SegmentReader(image: image, path: path)
    }
}

/// Reading a partition with its corrections: the one call the read path makes (`StoreReader`).
enum Corrections {
    /// A reader of the partition as `Sealing.openForReading` gives it, with its corrections applied when it has
    /// any. A partition without a corrections log costs one `access` call more than before.
    /// - Returns: the reader, and the damage found in its logs and its corrections log (a record that no longer
    ///   applies counts as damage: a read must not pass for corrected when it is not).
    /// - Parameters: prefix, include: the subjects the caller reads (`Sealing.openForReading`); a partition with
    ///   corrections is opened whole, since a correction may name any of its events.
    static func openForReading(_ dir: String, prefix: String = "", include: (String) -> Bool = { _ in true },
                               opened: SegmentReader.Opened = .init()) throws(StoreError) -> (SegmentReader?, [StoreDamage]) {
        let logPath = dir + "/" + CorrectionLog.fileName
        guard CorrectionLog.exists(logPath) else { return try Sealing.openForReading(dir, prefix: prefix, include: include, opened: opened) }
        let log = try CorrectionLog.read(path: logPath)
        if log.damage == nil, let cached = try CorrectedSegment.open(dir, log: log) { return (cached, []) }
        let (base, damage) = try Sealing.openForReading(dir, opened: opened)
        var found = damage + (log.damage.map { [$0] } ?? [])
        guard !log.records.isEmpty else { return (base, found) }
        var overlay = CorrectionOverlay(base: base)
        for r in log.records {
            if let why = overlay.apply(r) {
                found.append(StoreDamage(path: logPath, offset: 0, bytes: 0,
                                         reason: "correction \(r.number) no longer applies: \(why)", unattributedEvents: 0))
            }
        }
        guard !overlay.events.isEmpty else { return (nil, found) }
        return (try overlay.segment(generation: UInt64(log.records.count), path: dir + " (corrected)"), found)
    }
}

/// A sealed partition's corrected segment, built once by `tickwire correct` and read by every later reader: the
/// overlay's segment written beside the sealed one as `corrected-G-H/` (G the sealed generation it was built on,
/// H the first 16 hex digits of the corrections log's head hash). Derived data: used only while the partition has
/// no open log, its sealed generation is still G and the log's head is still H; otherwise readers rebuild the
/// overlay, as without it. Written like a sealed segment (`.tmp`, `fdatasync`, rename, directory `fsync`).
enum CorrectedSegment {
    static func name(generation: UInt64, head: ChainHash) -> String {
        "corrected-" + Layout.padded(generation) + "-" + String(head.hex.prefix(16))
    }

    /// The cached segment, when it matches the partition and log as they are.
    static func open(_ dir: String, log: CorrectionLog.Contents) throws(StoreError) -> SegmentReader? {
        guard !log.records.isEmpty else { return nil }
        let files = Layout.inspect(dir)
        guard files.liveLogs.isEmpty, files.liveChunks.isEmpty, let g = files.sealedGeneration else { return nil }
        let path = dir + "/" + name(generation: g, head: log.headHash)
        guard FS.isDirectory(path) else { return nil }
        return try SegmentReader.open(directory: path)
    }

    /// Writes the segment for `overlay` (the partition's sealed rows with every record of the log applied), if
    /// the partition is sealed with no open log before and after building it; removes older ones. Best effort:
    /// the corrections are already durable, and a reader without the cache rebuilds the same segment.
    static func write(_ dir: String, overlay: CorrectionOverlay, head: ChainHash, generation before: UInt64?) {
        let files = Layout.inspect(dir)
        guard let g = files.sealedGeneration, g == before, files.liveLogs.isEmpty, files.liveChunks.isEmpty, !overlay.events.isEmpty else { return }
        let final = name(generation: g, head: head)
        let tmp = dir + "/" + final + ".tmp"
        do {
            let image = SegmentImage.build(subjects: overlay.subjects, events: overlay.events, generation: g, ends: overlay.ends)
            try FS.makeDirectories(tmp)
            for (file, bytes) in image.files { try FS.writeDurably(tmp + "/" + file, bytes) }
            try FS.writeDurably(tmp + "/meta", image.meta())
            try FS.syncDirectory(tmp)
            try FS.rename(tmp, dir + "/" + final)
            for old in FS.list(dir) where old.hasPrefix("corrected-") && old != final { try FS.removeTree(dir + "/" + old) }
            try FS.syncDirectory(dir)
        } catch {
            try? FS.removeTree(tmp)
        }
    }
}
