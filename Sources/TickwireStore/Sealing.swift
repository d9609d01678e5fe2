import TickwireCore

/// Turning a partition's append logs into a sealed segment, and reading a partition that is still open.
enum Sealing {
    /// Every row of a partition — its sealed segment then its live logs, in arrival order — as subject texts and
    /// events indexing them. `nil` when the partition holds nothing.
    static func gather(_ dir: String, files: Layout.PartitionFiles) throws(StoreError)
        -> (subjects: [String], events: [Event])? {
        var subjects = [String](), events = [Event]()
        if let g = files.sealedGeneration {
            let seg = try SegmentReader.open(directory: dir + "/" + Layout.segmentName(g))
            subjects = seg.subjects
            seg.allEvents(into: &events)
        }
        var index = [String: UInt32]()
        for (i, s) in subjects.enumerated() { index[s] = UInt32(i) }
        for g in files.liveLogs {
            let log = try AppendLog.read(path: dir + "/" + Layout.logName(g))
            var map = [UInt32]()
            for s in log.subjects {
                if let i = index[s] { map.append(i) } else {
                    index[s] = UInt32(subjects.count); map.append(UInt32(subjects.count)); subjects.append(s)
                }
            }
            events.reserveCapacity(events.count + log.events.count)
            for var e in log.events { e.subjectID = map[Int(e.subjectID)]; events.append(e) }
        }
        return events.isEmpty && files.sealedGeneration == nil ? nil : (subjects, events)
    }

    /// A reader of the partition as it is now: its sealed segment mapped, or — while it has live logs — a
    /// segment built in memory from the sealed rows and the logs' whole blocks (a torn tail is ignored, not cut:
    /// readers never write).
    static func openForReading(_ dir: String) throws(StoreError) -> SegmentReader? {
        let files = Layout.inspect(dir)
        var hasLogData = false
        for g in files.liveLogs {
            let m = try MappedFile(path: dir + "/" + Layout.logName(g))
            if m.bytes.count >= AppendLog.headerSize { hasLogData = true }
        }
        if !hasLogData {
            guard let g = files.sealedGeneration else { return nil }
            return try SegmentReader.open(directory: dir + "/" + Layout.segmentName(g))
        }
        guard let all = try gather(dir, files: files) else { return nil }
        let image = SegmentImage.build(subjects: all.subjects, events: all.events, generation: files.nextGeneration)
        return try SegmentReader(image: image, path: dir + " (open)")
    }

    /// Seals a partition: merges its sealed segment and live logs into a new segment written beside them under a
    /// temporary name, forced to disk, renamed into place, and only then removes what it absorbed. A crash at any
    /// point leaves either the old state or the new one (`Layout.cleanUp` removes the leftovers).
    /// - Returns: the rows in the new segment, or nil when there was nothing to seal.
    @discardableResult
    static func seal(_ dir: String) throws(StoreError) -> Int? {
        let files = try Layout.cleanUp(dir)
        guard !files.liveLogs.isEmpty else { return nil }
        guard let all = try gather(dir, files: files) else {
            // Logs without one whole block (a crash right after creating them): nothing to keep.
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
