import TickwireCore

/// Corrections of stored events, their history and their audit: the Swift API behind `tickwire correct`,
/// `query versions`, `query changes`, `cleanse` and `audit verify` (docs/STORAGE.md, "Corrections").
public enum StoreCorrections {
    /// Writes corrections as new versions (nothing stored is overwritten). Every request is checked first — its
    /// event found, exactly one, in a state the change applies to — and nothing is written when one fails. Then
    /// each partition's records are appended durably to its log, under the log's lock and checked again there.
    ///
    /// Known times: each record gets `max(clock(), the previous record's + 1 ns, its event's current version's
    /// + 1 ns)`, so records' known times increase and a version never starts before the one it replaces.
    /// - Parameter store: the store directory (`DATA/store`).
    /// - Returns: the records written, in request order.
    /// - Throws: `CorrectionError` naming the request's line.
    @discardableResult
    public static func apply(store: String, _ requests: [CorrectionRequest],
                             clock: () -> Nanos = { Nanos.now() }) throws(CorrectionError) -> [CorrectionRecord] {
        // Group by partition, keeping request order within each.
        var groups = [PartitionKey: [CorrectionRequest]](), indices = [PartitionKey: [Int]]()
        var order = [PartitionKey]()
        for (i, r) in requests.enumerated() {
            guard !r.subject.isEmpty, r.subject.utf8.count <= 1024 else { throw .invalid(line: r.line, reason: "a subject of 1 to 1024 bytes is required") }
            guard r.author.utf8.count <= 255 else { throw .invalid(line: r.line, reason: "author is over 255 bytes") }
            guard r.reason.utf8.count <= 4096 else { throw .invalid(line: r.line, reason: "reason is over 4096 bytes") }
            let key = EventIdentity(subject: r.subject, eventTime: r.eventTime, knownTime: r.eventTime).partition
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append(r)
            indices[key, default: []].append(i)
        }
        // Pass 1: check everything, write nothing.
        var k = clock().rawValue
        for key in order {
            let (overlay, last) = try load(store, key)
            var o = overlay
            _ = try plan(groups[key]!, &o, after: max(last, k - 1), clock: clock)
        }
        // Pass 2: append, checking again under each log's lock.
        var written = [CorrectionRecord?](repeating: nil, count: requests.count)
        for key in order {
            let dir = store + "/" + key.relativePath
            do {
                let generation = Layout.inspect(dir).sealedGeneration
                var after: CorrectionOverlay?
                let records = try CorrectionLog.append(path: dir + "/" + CorrectionLog.fileName, directory: dir) { existing, last in
                    var o = try overlay(store, key, existing.records)
                    let planned = try plan(groups[key]!, &o, after: max(last, k - 1), clock: clock)
                    after = o
                    return planned.map { ($0.known, $0.target, $0.change, $0.author, $0.reason) }
                }
                if let o = after, let head = records.last?.hash {
                    CorrectedSegment.write(dir, overlay: o, head: head, generation: generation)
                }
                for (r, i) in zip(records, indices[key]!) { written[i] = r }
                k = max(k, (records.last?.knownTime.rawValue ?? k) + 1)
            } catch let e as CorrectionError { throw e } catch let e as StoreError { throw .store(e) } catch {
                throw .store(.badEvent(reason: "\(error)"))
            }
        }
        return written.compactMap { $0 }
    }

    struct Planned { var known: Nanos; var target: EventIdentity; var change: CorrectionChange; var author: String; var reason: String }

    /// The base rows of a partition with its existing corrections applied, and its last record's known time.
    static func load(_ store: String, _ key: PartitionKey) throws(CorrectionError) -> (CorrectionOverlay, Int64) {
        let path = CorrectionLog.path(store: store, partition: key)
        var records = [CorrectionRecord]()
        if CorrectionLog.exists(path) {
            let log: CorrectionLog.Contents
            do { log = try CorrectionLog.read(path: path) } catch { throw .store(error) }
            if let d = log.damage {
                throw .store(.corrupt(path: path, offset: d.offset, reason: d.reason + "; no correction is appended to a damaged log"))
            }
            records = log.records
        }
        return (try overlay(store, key, records), records.last?.knownTime.rawValue ?? .min)
    }

    static func overlay(_ store: String, _ key: PartitionKey, _ records: [CorrectionRecord]) throws(CorrectionError) -> CorrectionOverlay {
        let dir = store + "/" + key.relativePath
        let base: SegmentReader?
        do { base = FS.isDirectory(dir) ? try Sealing.openForReading(dir).0 : nil } catch { throw .store(error) }
        var o = CorrectionOverlay(base: base)
        for r in records { o.apply(r) }
        return o
    }

    /// Turns requests into records against `overlay`, applying each so that later ones see it.
    static func plan(_ requests: [CorrectionRequest], _ overlay: inout CorrectionOverlay, after last: Int64,
                     clock: () -> Nanos) throws(CorrectionError) -> [Planned] {
        var out = [Planned]()
        var k = last
        for req in requests {
            k = max(k + 1, clock().rawValue)
            let target: EventIdentity, change: CorrectionChange
            switch req.operation {
            case .insert(let kind, let fields):
                guard kind.name == req.subject.split(separator: ".").last.map(String.init) || !req.subject.hasPrefix("MD.") else {
                    throw .invalid(line: req.line, reason: "a \(kind) does not belong on subject \(req.subject) (its last token names its kind)")
                }
                var v = EventValues(kind: kind)
                try CorrectionFields.apply(fields, to: &v, line: req.line)
                var ordinal: UInt32 = 0
                while overlay.isKnown(EventIdentity(subject: req.subject, eventTime: req.eventTime, knownTime: Nanos(k), ordinal: ordinal)) { ordinal += 1 }
                target = EventIdentity(subject: req.subject, eventTime: req.eventTime, knownTime: Nanos(k), ordinal: ordinal)
                change = .insert(v)
            case .replace(let fields):
                target = try find(req, in: overlay)
                guard var v = overlay.latestValues(target) else { throw .noSuchEvent(line: req.line, identity: describe(req)) }
                try CorrectionFields.apply(fields, to: &v, line: req.line)
                change = .replace(v)
            case .delete:
                target = try find(req, in: overlay)
                change = .delete
            }
            if case .row(let r) = overlay.state(target) { k = max(k, overlay.events[r].knownTime.rawValue + 1) }
            let record = CorrectionRecord(number: 0, knownTime: Nanos(k), target: target, change: change, author: req.author,
                                          reason: req.reason, prevHash: .zero, hash: .zero)
            if let why = overlay.apply(record) { throw .invalid(line: req.line, reason: why) }
            out.append(Planned(known: Nanos(k), target: target, change: change, author: req.author, reason: req.reason))
        }
        return out
    }

    static func describe(_ req: CorrectionRequest) -> String {
        var s = "on \(req.subject) at event time \(req.eventTime.rawValue) (\(req.eventTime.iso8601))"
        if let k = req.knownTime { s += " known at \(k.rawValue)" }
        if let id = req.tradeID { s += " with trade id \(id)" }
        if let o = req.ordinal { s += " ordinal \(o)" }
        return s
    }

    /// The one event a request names. A TRADE named by trade id whose feed sent later versions (a re-sent id) is
    /// its latest version; naming an earlier one by known time is refused.
    static func find(_ req: CorrectionRequest, in overlay: CorrectionOverlay) throws(CorrectionError) -> EventIdentity {
        var candidates = overlay.identities(subject: req.subject, eventTime: req.eventTime)
        func word(_ id: EventIdentity) -> EventValues? { overlay.latestValues(id) }
        if let id = req.tradeID {
            candidates = candidates.filter { c in
                guard let v = word(c), v.kind == .trade || v.kind == .bust else { return false }
                return v.c == Int64(bitPattern: id)
            }
            if req.knownTime == nil, let latest = candidates.max(by: { $0.knownTime < $1.knownTime }) { candidates = [latest] }
        }
        // A known time names the event's first version, or its current one (what a read shows, e.g. to a rule).
        if let k = req.knownTime { candidates = candidates.filter { $0.knownTime == k || overlay.currentKnownTime($0) == k } }
        if let o = req.ordinal { candidates = candidates.filter { $0.ordinal == o } }
        guard let first = candidates.first else { throw .noSuchEvent(line: req.line, identity: describe(req)) }
        guard candidates.count == 1 else { throw .ambiguous(line: req.line, identity: describe(req), matches: candidates.count) }
        if let v = word(first), v.kind == .trade, v.c != 0,
           let later = overlay.identities(subject: req.subject, eventTime: req.eventTime)
               .filter({ $0.knownTime > first.knownTime && word($0)?.kind == .trade && word($0)?.c == v.c })
               .min(by: { $0.knownTime < $1.knownTime }) {
            throw .invalid(line: req.line, reason: "the trade \(describe(req)) was superseded by the feed's version known at \(later.knownTime.rawValue); correct that one")
        }
        return first
    }
}

// MARK: - History

/// One version of an event: the stored original, a correction's version, a deletion, or a trade shown again
/// when the bust that voided it was withdrawn.
public struct EventVersion: Sendable, Equatable {
    public enum Origin: String, Sendable { case stored, replace, delete, insert, restored }
    public var origin: Origin
    /// From when this version is true (as known).
    public var knownTime: Nanos
    /// Until when (the next version's known time), nil while current.
    public var validUntil: Nanos?
    /// The values (nil for a deletion).
    public var values: EventValues?
    /// The correction that made it (nil for the stored original and a restored trade).
    public var record: CorrectionRecord?
}

/// A correction seen as a change: the version before it and after it.
public struct CorrectionChangeLine: Sendable, Equatable {
    public var partition: PartitionKey
    public var record: CorrectionRecord
    public var before: EventValues?
    public var after: EventValues?
}

extension StoreCorrections {
    /// Every version of one event (named as a correction request names it), oldest first.
    public static func versions(store: String, of req: CorrectionRequest) throws(CorrectionError) -> (EventIdentity, [EventVersion]) {
        let key = EventIdentity(subject: req.subject, eventTime: req.eventTime, knownTime: req.eventTime).partition
        let (overlay, _) = try load(store, key)
        let id = try find(req, in: overlay)
        var out = [EventVersion]()
        if let h = overlay.history[id] {
            for (record, row) in h {
                let origin: EventVersion.Origin
                switch record?.change {
                case .replace?: origin = .replace
                case .delete?: origin = .delete
                case .insert?: origin = .insert
                case nil: origin = row! < overlay.baseCount ? .stored : .restored
                }
                let k = record?.knownTime ?? overlay.events[row!].knownTime
                out.append(EventVersion(origin: origin, knownTime: k, validUntil: nil,
                                        values: row.map { EventValues(overlay.events[$0]) }, record: record))
            }
        } else if case .row(let r) = overlay.state(id) {
            out.append(EventVersion(origin: .stored, knownTime: overlay.events[r].knownTime, validUntil: nil,
                                    values: EventValues(overlay.events[r]), record: nil))
        }
        // A trade the feed re-sent (same id): its earlier stored versions come first.
        if let first = out.first, first.origin == .stored, let v = first.values, v.kind == .trade, v.c != 0 {
            let earlier = overlay.baseRows(subject: id.subject, eventTime: id.eventTime.rawValue)
                .filter { overlay.events[$0].kind == .trade && overlay.events[$0].c == v.c && overlay.events[$0].knownTime < id.knownTime }
                .map { EventVersion(origin: .stored, knownTime: overlay.events[$0].knownTime, validUntil: nil,
                                    values: EventValues(overlay.events[$0]), record: nil) }
            out = earlier + out
        }
        for i in out.indices.dropLast() { out[i].validUntil = out[i + 1].knownTime }
        return (id, out)
    }

    /// Every correction with known time in (from, to], partition by partition in (date, root) order, each with
    /// the version it replaced and the one it made: what a replay as known at `to` shows differently from one
    /// as known at `from` because of corrections.
    public static func changes(store: String, from: Nanos, to: Nanos, subjects: SubjectPattern? = nil) throws(CorrectionError) -> [CorrectionChangeLine] {
        var out = [CorrectionChangeLine]()
        for key in Layout.partitions(in: store) {
            let path = CorrectionLog.path(store: store, partition: key)
            guard CorrectionLog.exists(path) else { continue }
            if let p = subjects, !p.couldMatch(root: key.root) { continue }
            let log: CorrectionLog.Contents
            do { log = try CorrectionLog.read(path: path) } catch { throw .store(error) }
            if let d = log.damage { throw .store(.corrupt(path: path, offset: d.offset, reason: d.reason)) }
            guard log.records.contains(where: { $0.knownTime > from && $0.knownTime <= to }) else { continue }
            var o = try overlay(store, key, [])
            for r in log.records {
                let before = o.state(r.target) == .deleted ? nil : o.latestValues(r.target)
                o.apply(r)
                guard r.knownTime > from && r.knownTime <= to else { continue }
                if let p = subjects, !p.matches(subjectText: r.target.subject) { continue }
                out.append(CorrectionChangeLine(partition: key, record: r, before: before,
                                                after: o.state(r.target) == .deleted ? nil : o.latestValues(r.target)))
            }
        }
        return out
    }
}

// MARK: - Audit

/// What checking every corrections log found.
public struct CorrectionAudit: Sendable, Equatable {
    public struct Log: Sendable, Equatable {
        public var path: String
        public var records: Int
        public var headHash: ChainHash
        public var damage: StoreDamage?
    }
    public var logs: [Log]
    public var ok: Bool { logs.allSatisfy { $0.damage == nil } }
    public var records: Int { logs.reduce(0) { $0 + $1.records } }
    /// Damage in the first damaged log, if any.
    public var firstDamage: StoreDamage? { logs.lazy.compactMap(\.damage).first }
}

extension StoreCorrections {
    /// Checks every partition's corrections log: header, every record's CRC, number, known-time order and
    /// hash-chain link. A log that ends inside a record (an append cut short, never reported as made) is not damage.
    public static func verify(store: String) throws(StoreError) -> CorrectionAudit {
        var logs = [CorrectionAudit.Log]()
        for key in Layout.partitions(in: store) {
            let path = CorrectionLog.path(store: store, partition: key)
            guard CorrectionLog.exists(path) else { continue }
            let c = try CorrectionLog.read(path: path)
            logs.append(.init(path: path, records: c.records.count, headHash: c.headHash, damage: c.damage))
        }
        return CorrectionAudit(logs: logs)
    }
}
