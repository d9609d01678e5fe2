import TickwireCore
#if canImport(Glibc)
import Glibc
#endif

extension Journal {
    /// Cuts a closed journal back to record `seq`: every record after it leaves the journal for `quarantine/`
    /// (the segment holding `seq + 1` is copied there whole and cut, later segments are moved), and the ack mark
    /// is rewritten to vouch for `seq`. Nothing is deleted.
    ///
    /// For a replica whose tail the log it follows did not keep (docs/ARCHITECTURE.md, "Replicated trades"): the
    /// log is the truth, the records after `seq` are applied again from it. Not for damage: that is
    /// `CorruptionPolicy.truncate`, an operator's decision.
    /// - Parameter damage: where record `seq + 1` lies damaged (found by the verifier in a segment the open did
    ///   not read): the cut is made there, without reading it.
    /// - Returns: the files quarantined (empty when the journal already ended at `seq`).
    @discardableResult
    public static func rollBack(directory: String, through seq: UInt64, damage: JournalCorruption? = nil) throws(JournalError) -> [String] {
        var options = JournalOptions()
        options.preExtendSegments = false
        let journal = try Journal(directory: directory, options: options, replayFrom: .max)
        let keep: JournalRecord?, cut: (segment: String, offset: Int64)
        do {
            defer { journal.close() }
            guard seq < journal.durableSequence else { return [] }
            keep = seq == 0 ? nil : try journal.record(seq)
            if let damage { cut = (damage.segment, damage.offset) } else {
                let next = try journal.record(seq + 1)
                cut = (next.segment, next.offset)
            }
        }
        let generation = try AckMark.read(directory: directory).mark?.generation ?? 0
        let names = try JournalScan.segmentNames(directory).map(\.name)
        guard let at = names.firstIndex(of: cut.segment) else { throw .noSuchRecord(seq: seq + 1) }
        let later = Array(names[(at + 1)...])
        let quarantined = try quarantine(directory, copying: cut.segment, moving: later)
        let path = directory + "/" + cut.segment
        if cut.offset <= Int64(JournalFormat.segmentHeaderSize) {
            if unlink(path) != 0 { throw .fromErrno("unlink", path) }
        } else {
            let fd = try FileIO.open(path, O_WRONLY)
            defer { Glibc.close(fd) }
            try FileIO.truncate(fd, to: cut.offset, path: path)
            try FileIO.syncData(fd, path: path)
        }
        try FileIO.syncDirectory(directory)
        let mark = AckMark(generation: generation &+ 1, seq: seq,
                           segmentFirstSeq: keep.flatMap { JournalFormat.firstSeq(segmentName: $0.segment) } ?? 0,
                           endOffset: keep.map { $0.offset + Int64(JournalFormat.recordHeaderSize + $0.payload.count) } ?? 0,
                           time: .now(), hash: keep?.hash ?? .zero)
        try AckMarkFile(directory: directory, sync: true, mark: mark).close()
        return quarantined
    }

    /// Copies `copying` to `quarantine/` (it stays in place, to be cut by the caller) and moves `moving` there,
    /// each named with the time; syncs what it wrote. Returns the names, `copying` first.
    static func quarantine(_ directory: String, copying: String, moving: [String]) throws(JournalError) -> [String] {
        try FileIO.makeDirectories(directory + "/quarantine")
        let stamp = String(Nanos.now().rawValue)
        let copy = try FileIO.readFile(directory + "/" + copying)
        let qfd = try FileIO.open(directory + "/quarantine/\(copying).\(stamp)", O_WRONLY | O_CREAT | O_TRUNC)
        defer { Glibc.close(qfd) }
        try FileIO.writeAll(qfd, copy, path: "quarantine/\(copying)")
        try FileIO.syncData(qfd, path: "quarantine/\(copying)")
        for name in moving {
            try FileIO.rename(directory + "/" + name, directory + "/quarantine/\(name).\(stamp)")
        }
        try FileIO.syncDirectory(directory + "/quarantine")
        return [copying] + moving
    }
}
