import TickwireCore
#if canImport(Glibc)
import Glibc
#endif

extension Journal {
    /// What recovery read and kept: the segments (a torn or cut tail already cut off the files), the index of
    /// what was read, where the last valid record ends (what a new ack mark vouches for), and the report.
    struct Recovered {
        var scan: JournalScan
        var segments: [Segment]
        var index: [IndexEntry]
        var sinceIndex: Int
        var lastRecord: (segment: Int, end: Int64)
        var report: RecoveryReport
    }

    /// Reads the ack mark, then the segments (whole from the mark's segment or `replayFrom`, whichever is earlier;
    /// headers only before), checking every CRC and chain link; cuts a torn tail; under `.truncate`, quarantines
    /// and cuts at damage; otherwise throws `.corrupt` and changes nothing.
    static func recover(_ directory: String, _ options: JournalOptions, replayFrom: UInt64,
                        replay: ((JournalRecord) -> Void)?) throws(JournalError) -> Recovered {
        var index: [IndexEntry] = []
        var since = 0
        let every = options.indexEvery
        var lastSegment = -1
        // Where the last valid record ends: what a new ack mark vouches for.
        var lastRecord: (segment: Int, end: Int64) = (-1, 0)
        // The mark is read before the segments: it never claims more than what the scan then finds on disk.
        let found = try AckMark.read(directory: directory)
        // An operator's truncate reads everything: what it cuts and keeps must all have been checked.
        let readWholeFrom = options.onCorruption == .truncate ? 1 : found.mark.map { min(replayFrom, $0.segmentFirstSeq) } ?? 1
        let scan = try JournalScan.run(directory, watch: found.mark?.seq ?? 0, headersOnlyBefore: readWholeFrom) { seg, bytes, off, seq, hash in
            if seg != lastSegment || since == every {
                index.append(IndexEntry(seq: seq, segment: seg, offset: Int64(off)))
                lastSegment = seg; since = 0
            }
            since += 1
            let len = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: off, as: UInt32.self))
            lastRecord = (seg, Int64(off + JournalFormat.recordHeaderSize) + Int64(len))
            if let replay, seq >= replayFrom { replay(JournalRecord(bytes, at: off, hash: hash, segment: "")) }
        }
        let verdict = scan.assess(found)
        var truncated: Int64 = 0
        var quarantined: [String] = []
        var segs = scan.segments.map { Segment(firstSeq: $0.firstSeq, name: $0.name, prevHash: $0.prevHash) }
        var skipped: JournalCorruption?
        if let corruption = verdict.corruption {
            guard options.onCorruption == .truncate else { throw JournalError.corrupt(corruption) }
            skipped = corruption
            if let problem = scan.problem {
                quarantined = try Journal.quarantine(directory, copying: scan.segments[problem.segment].name, moving: scan.laterSegments)
            }
        }
        if let problem = scan.problem {
            // A torn tail, or damage the operator chose to cut (a copy is in quarantine/).
            let path = directory + "/" + scan.segments[problem.segment].name
            let fd = try FileIO.open(path, O_WRONLY)
            let size = try FileIO.fileSize(fd, path: path)
            if verdict.tornTail { truncated = min(size, problem.detail.writtenEnd) - problem.detail.offset }
            if problem.detail.offset == 0 {
                // Not even its header survived: the segment holds no record.
                Glibc.close(fd)
                if unlink(path) != 0 { throw JournalError.fromErrno("unlink", path) }
                segs.removeLast()
            } else {
                try FileIO.truncate(fd, to: problem.detail.offset, path: path)
                try FileIO.syncData(fd, path: path)
                Glibc.close(fd)
            }
            try FileIO.syncDirectory(directory)
        }
        return Recovered(scan: scan, segments: segs, index: index, sinceIndex: since, lastRecord: lastRecord,
                         report: RecoveryReport(records: scan.records, truncatedBytes: truncated, skippedCorruption: skipped,
                                                lostAcknowledged: skipped == nil ? nil : verdict.lostAcknowledged,
                                                quarantined: quarantined, ackMark: found, deferredSegments: scan.headersOnly))
    }
}
