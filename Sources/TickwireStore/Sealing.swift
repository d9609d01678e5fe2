import TickwireCore

/// Turning a partition's append logs into a sealed segment, and reading a partition that is still open.
enum Sealing {
    /// A partition's rows and the state of its live logs.
    struct Gathered {
        var subjects: [String] = []
        /// Every row — the sealed segment's, then the live logs' intact blocks in arrival order — with
        /// `subjectID` indexing `subjects`.
        var events: [Event] = []
        /// Each live log's path and what reading it found (its events are in `events`).
        var logs: [(path: String, contents: AppendLog.Contents)] = []
        var hasSegment = false
        /// Nothing to read or seal: no sealed segment and no event in an intact block.
        var isEmpty: Bool { events.isEmpty && !hasSegment }
        var damage: [StoreDamage] { logs.flatMap(\.contents.damage) }
    }

    /// Every row of a partition — its sealed segment then its live logs, in arrival order.
    static func gather(_ dir: String, files: Layout.PartitionFiles) throws(StoreError) -> Gathered {
        var all = Gathered()
        all.hasSegment = files.sealedGeneration != nil
        var subjects = [String](), events = [Event]()
        if let g = files.sealedGeneration {
            let seg = try SegmentReader.open(directory: dir + "/" + Layout.segmentName(g))
            subjects = seg.subjects
            seg.allEvents(into: &events)
        }
        var index = [String: UInt32]()
        for (i, s) in subjects.enumerated() { index[s] = UInt32(i) }
        for g in files.liveLogs {
            let path = dir + "/" + Layout.logName(g)
            let log = try AppendLog.read(path: path)
            all.logs.append((path, log))
            var map = [UInt32]()
            for s in log.subjects {
                // A subject whose definition was in damaged bytes: no event of the log names it.
                if s.isEmpty { map.append(.max); continue }
                if let i = index[s] { map.append(i) } else {
                    index[s] = UInt32(subjects.count); map.append(UInt32(subjects.count)); subjects.append(s)
                }
            }
            events.reserveCapacity(events.count + log.events.count)
            for var e in log.events { e.subjectID = map[Int(e.subjectID)]; events.append(e) }
        }
        all.subjects = subjects
        all.events = events
        return all
    }

    /// A reader of the partition as it is now: its sealed segment mapped, or — while it has live logs — a
    /// segment built in memory from the sealed rows and the logs' intact blocks (a torn tail is ignored and
    /// damage skipped, not cut: readers never write).
    /// - Returns: the reader (nil when the partition holds nothing), and the damage found in its logs.
    static func openForReading(_ dir: String) throws(StoreError) -> (SegmentReader?, [StoreDamage]) {
        let files = Layout.inspect(dir)
        var hasLogData = false
        for g in files.liveLogs {
            let m = try MappedFile(path: dir + "/" + Layout.logName(g))
            if m.bytes.count >= AppendLog.headerSize { hasLogData = true }
        }
        if !hasLogData {
            guard let g = files.sealedGeneration else { return (nil, []) }
            return (try SegmentReader.open(directory: dir + "/" + Layout.segmentName(g)), [])
        }
        let all = try gather(dir, files: files)
        guard !all.isEmpty else { return (nil, all.damage) }
        let image = SegmentImage.build(subjects: all.subjects, events: all.events, generation: files.nextGeneration)
        return (try SegmentReader(image: image, path: dir + " (open)"), all.damage)
    }

    /// Seals a partition: merges its sealed segment and live logs into a new segment written beside them under a
    /// temporary name, forced to disk, renamed into place, and only then removes what it absorbed. A crash at any
    /// point leaves either the old state or the new one (`Layout.cleanUp` removes the leftovers). A log with
    /// damage before intact blocks is first kept whole in `quarantine/`; a torn tail (nothing valid after it) is
    /// dropped with its log. Both are reported.
    /// - Returns: the rows in the new segment, or nil when there was nothing to seal.
    @discardableResult
    static func seal(store: String, key: PartitionKey, report: (StoreIncident) -> Void) throws(StoreError) -> Int? {
        let dir = store + "/" + key.relativePath
        let files = try Layout.cleanUp(dir)
        guard !files.liveLogs.isEmpty else { return nil }
        let all = try gather(dir, files: files)
        for (path, log) in all.logs {
            if !log.damage.isEmpty {
                report(.quarantined(path: path, damage: log.damage, copy: try Quarantine.keep(log: path, store: store, key: key)))
            } else if log.tornBytes > 0 {
                report(.tornTailCut(path: path, offset: log.validBytes, bytes: log.tornBytes, reason: log.tornReason ?? ""))
            }
        }
        guard !all.isEmpty else {
            // Logs without one intact event (a crash right after creating them, or a torn tail alone): nothing to
            // keep. Damage, if any, is in quarantine by now.
            for g in files.liveLogs { try FS.remove(dir + "/" + Layout.logName(g)) }
            try FS.syncDirectory(dir)
            return nil
        }
        let generation = files.liveLogs.max()!
        let image = SegmentImage.build(subjects: all.subjects, events: all.events, generation: generation)
        let name = Layout.segmentName(generation)
        let tmp = dir + "/" + name + ".tmp"
        try FS.makeDirectories(tmp)
        for (file, bytes) in image.files { try FS.writeDurably(tmp + "/" + file, bytes) }
        try FS.writeDurably(tmp + "/meta", image.meta())
        try FS.syncDirectory(tmp)
        try FS.rename(tmp, dir + "/" + name)
        try FS.syncDirectory(dir)
        _ = try Layout.cleanUp(dir)
        return image.rows
    }
}
