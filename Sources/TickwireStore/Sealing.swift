import TickwireCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Turning a partition's append logs into a sealed segment, and reading a partition that is still open.
enum Sealing {
    /// A partition's rows and the live logs they came from.
    struct Gathered {
        var subjects: [String] = []
        /// Every row — the sealed segment's, its chunks', then the live logs' intact blocks in arrival order —
        /// with `subjectID` indexing `subjects`.
        var events: [Event] = []
        /// Each live log's path and what reading it found (its events are in `events`).
        var logs: [(path: String, contents: AppendLog.Contents)] = []
    }

    /// Every row of a partition — its sealed segment, its sealed chunks, then its live logs of generation `upTo`
    /// or lower, in arrival order.
    static func gather(_ dir: String, files: Layout.PartitionFiles, upTo: UInt64 = .max) throws(StoreError) -> Gathered {
        var all = Gathered()
        var subjects = [String](), events = [Event]()
        var index = [String: UInt32]()
        func add(_ texts: [String], _ rows: [Event]) {
            var map = [UInt32]()
            for s in texts {
                // A subject whose definition was in damaged bytes: no event of the log names it.
                if s.isEmpty { map.append(.max); continue }
                if let i = index[s] { map.append(i) } else {
                    index[s] = UInt32(subjects.count); map.append(UInt32(subjects.count)); subjects.append(s)
                }
            }
            events.reserveCapacity(events.count + rows.count)
            for var e in rows { e.subjectID = map[Int(e.subjectID)]; events.append(e) }
        }
        for name in (files.sealedGeneration.map { [Layout.segmentName($0)] } ?? []) + files.liveChunks.map(Layout.chunkName) {
            let seg = try SegmentReader.open(directory: dir + "/" + name)
            var rows = [Event]()
            seg.allEvents(into: &rows)
            add(seg.subjects, rows)
        }
        for g in files.liveLogs where g <= upTo {
            let path = dir + "/" + Layout.logName(g)
            let log = try AppendLog.read(path: path)
            all.logs.append((path, log))
            add(log.subjects, log.events)
        }
        all.subjects = subjects
        all.events = events
        return all
    }

    /// A reader of the partition as it is now: its sealed segment and chunks mapped, and — while it has live logs —
    /// a segment built in memory from the logs' intact blocks (the tail; a torn tail is ignored and damage
    /// skipped, not cut: readers never write). Several pieces are read through one composed reader
    /// (`SegmentReader.compose`), which presents exactly the rows, order and versions a sealed segment of the
    /// same events would.
    /// - Parameter include: the subjects a read wants: only these are built from the logs and composed.
    /// - Returns: the reader (nil when the partition holds nothing), and the damage found in its logs.
    /// - Parameter prefix: every subject `include` accepts starts with it.
    /// - Parameter opened: segments this reader opened before (reused, and the new ones added).
    static func openForReading(_ dir: String, prefix: String = "", include: (String) -> Bool = { _ in true },
                               opened: SegmentReader.Opened = .init()) throws(StoreError) -> (SegmentReader?, [StoreDamage]) {
        // A sealer may absorb a log or chunk between listing the directory and opening it: look again.
        var attempt = 0
        while true {
            do { return try openPieces(dir, prefix: prefix, include: include, opened: opened) } catch {
                attempt += 1
                guard case .io(_, _, let e) = error, e == ENOENT, attempt < 8 else { throw error }
            }
        }
    }

    private static func openPieces(_ dir: String, prefix: String, include: (String) -> Bool,
                                   opened: SegmentReader.Opened) throws(StoreError) -> (SegmentReader?, [StoreDamage]) {
        try withoutActuallyEscaping(include) { (include) throws(StoreError) in try openPieces(dir, prefix: prefix, escaping: include, opened: opened) }
    }

    private static func openPieces(_ dir: String, prefix: String, escaping include: @escaping (String) -> Bool,
                                   opened: SegmentReader.Opened) throws(StoreError) -> (SegmentReader?, [StoreDamage]) {
        let files = Layout.inspect(dir)
        var pieces = [SegmentReader]()
        if let g = files.sealedGeneration { pieces.append(try opened.open(dir + "/" + Layout.segmentName(g))) }
        for g in files.liveChunks { pieces.append(try opened.open(dir + "/" + Layout.chunkName(g))) }
        var damage = [StoreDamage]()
        var subjects = [String](), events = [Event](), index = [String: UInt32]()
        // A bust (`STEM.BUST`) voids trades of `STEM.TRADE`: it comes along when those are read.
        let wanted = { (s: String) -> Bool in
            include(s) || (s.hasSuffix(".BUST") && include(String(Layout.stem(s)) + ".TRADE"))
        }
        for g in files.liveLogs {
            // Read, not mapped (`AppendLog.read(path:)`): the writer may cut the log back under this reader.
            let log = try AppendLog.read(path: dir + "/" + Layout.logName(g), want: wanted)
            damage += log.damage
            let map = log.subjects.map { s -> UInt32 in
                guard !s.isEmpty, wanted(s) else { return .max }
                if let i = index[s] { return i }
                index[s] = UInt32(subjects.count); subjects.append(s)
                return UInt32(subjects.count - 1)
            }
            for var e in log.events {
                let m = map[Int(e.subjectID)]
                if m == .max { continue }
                e.subjectID = m
                events.append(e)
            }
        }
        if !events.isEmpty {
            let image = SegmentImage.build(subjects: subjects, events: events, generation: files.nextGeneration)
            pieces.append(try SegmentReader(image: image, path: dir + " (open)"))
        }
        switch pieces.count {
        case 0: return (nil, damage)
        case 1: return (pieces[0], damage)
        default: return (try SegmentReader.compose(pieces, path: dir, prefix: prefix, include: include), damage)
        }
    }

    /// Writes a segment image durably as `name` in `dir`: files under `name.tmp/`, each `fdatasync`ed, the
    /// directory synced, renamed into place, the partition directory synced.
    static func writeSegment(_ image: SegmentImage, dir: String, name: String) throws(StoreError) {
        let tmp = dir + "/" + name + ".tmp"
        try FS.makeDirectories(tmp)
        for (file, bytes) in image.files { try FS.writeDurably(tmp + "/" + file, bytes) }
        try FS.writeDurably(tmp + "/meta", image.meta())
        try FS.syncDirectory(tmp)
        try FS.rename(tmp, dir + "/" + name)
        try FS.syncDirectory(dir)
    }

    /// Reports a log's damage (after keeping it in quarantine) or its torn tail before it is absorbed.
    private static func reportLog(_ path: String, _ log: AppendLog.Contents, store: String, key: PartitionKey,
                                  report: (StoreIncident) -> Void) throws(StoreError) {
        if !log.damage.isEmpty {
            report(.quarantined(path: path, damage: log.damage, copy: try Quarantine.keep(log: path, store: store, key: key)))
        } else if log.tornBytes > 0 {
            report(.tornTailCut(path: path, offset: log.validBytes, bytes: log.tornBytes, reason: log.tornReason ?? ""))
        }
    }

    /// Seals one closed log into the chunk `chunk-G` beside it (G its generation) and then removes the log. Only
    /// the log's own events are read, so memory is bounded by the log, whatever the partition holds. A crash
    /// before the rename leaves the log (and a temporary the next clean-up removes); after it, the chunk, and
    /// the log is removed as absorbed by the next clean-up. The caller guarantees no writer appends to the log.
    /// - Returns: the rows in the chunk, or nil when the log held no intact event (it is removed all the same).
    @discardableResult
    static func sealChunk(store: String, key: PartitionKey, generation g: UInt64,
                          report: (StoreIncident) -> Void) throws(StoreError) -> Int? {
        let dir = store + "/" + key.relativePath
        let files = try Layout.cleanUp(dir)
        guard files.liveLogs.contains(g) else { return nil }
        let path = dir + "/" + Layout.logName(g)
        let log = try AppendLog.read(path: path)
        try reportLog(path, log, store: store, key: key, report: report)
        guard !log.events.isEmpty else {
            try FS.remove(path)
            try FS.syncDirectory(dir)
            return nil
        }
        // Ids whose definition was in damaged bytes name no kept event: they are left out.
        var subjects = [String](), map = [UInt32]()
        for s in log.subjects {
            map.append(s.isEmpty ? .max : UInt32(subjects.count))
            if !s.isEmpty { subjects.append(s) }
        }
        let events = log.events.map { e -> Event in var e = e; e.subjectID = map[Int(e.subjectID)]; return e }
        let image = SegmentImage.build(subjects: subjects, events: events, generation: g)
        try writeSegment(image, dir: dir, name: Layout.chunkName(g))
        try FS.remove(path)
        try FS.syncDirectory(dir)
        return image.rows
    }

    /// Seals a partition: merges its sealed segment, chunks and live logs (of generation `upTo` or lower) into a
    /// new segment written beside them under a temporary name, forced to disk, renamed into place, and only then
    /// removes what it absorbed. A crash at any point leaves either the old state or the new one (`Layout.cleanUp`
    /// removes the leftovers). A log with damage before intact blocks is first kept whole in `quarantine/`; a torn
    /// tail (nothing valid after it) is dropped with its log. Both are reported.
    ///
    /// When the partition holds more than `compactRows` rows, merging would need more memory than that bound
    /// allows: each remaining log is sealed as a chunk instead, and the chunks stay the partition's sealed form.
    /// - Returns: the rows in the new segment or chunks, or nil when there was nothing to seal.
    @discardableResult
    static func seal(store: String, key: PartitionKey, upTo: UInt64 = .max, compactRows: Int = .max,
                     report: (StoreIncident) -> Void) throws(StoreError) -> Int? {
        let dir = store + "/" + key.relativePath
        let files = try Layout.cleanUp(dir)
        let logs = files.liveLogs.filter { $0 <= upTo }
        guard !logs.isEmpty || files.liveChunks.count > (files.sealedGeneration == nil ? 1 : 0) else { return nil }
        if try rowsBound(dir, files, logs: logs) > compactRows {
            guard !logs.isEmpty else { return nil }
            var rows = 0
            for g in logs { rows += try sealChunk(store: store, key: key, generation: g, report: report) ?? 0 }
            return rows
        }
        let all = try gather(dir, files: files, upTo: upTo)
        for (path, log) in all.logs { try reportLog(path, log, store: store, key: key, report: report) }
        guard !all.events.isEmpty else {
            // Logs without one intact event (a crash right after creating them, or a torn tail alone): nothing to
            // keep. Damage, if any, is in quarantine by now.
            for g in logs { try FS.remove(dir + "/" + Layout.logName(g)) }
            try FS.syncDirectory(dir)
            return nil
        }
        let generation = (logs + files.liveChunks).max()!
        let image = SegmentImage.build(subjects: all.subjects, events: all.events, generation: generation)
        try writeSegment(image, dir: dir, name: Layout.segmentName(generation))
        _ = try Layout.cleanUp(dir)
        return image.rows
    }

    /// At least the rows a partition's merge would hold: its sealed pieces' rows plus the logs' events (their
    /// size over 64 bytes, an upper bound).
    private static func rowsBound(_ dir: String, _ files: Layout.PartitionFiles, logs: [UInt64]) throws(StoreError) -> Int {
        var rows = 0
        for name in (files.sealedGeneration.map { [Layout.segmentName($0)] } ?? []) + files.liveChunks.map(Layout.chunkName) {
            let m = try MappedFile(path: dir + "/" + name + "/meta")
            guard m.bytes.count >= 24 else { continue }
            rows += Int(m.bytes.le(UInt64.self, 16))
        }
        for g in logs { rows += try OwnedFile(path: dir + "/" + Layout.logName(g), flags: O_RDONLY).size() / AppendLog.eventSize }
        return rows
    }
}
