import CTickwireSys
import Synchronization
import TickwireCore
#if canImport(Glibc)
import Glibc
#endif

/// How a journal writes and what it does when it finds damage.

/// The journal's helpers beside group commit: the marker writes the ack mark behind durable commits, the verifier
/// checks the segments open did not read, the preparer makes the next segment's file ahead of the roll.
extension Journal {
    // MARK: The marker thread

    /// Writes an ack mark for the newest durable commit, then rests `ackMarkIntervalNanos` so that under load one
    /// mark covers many commits. A mark that cannot be written (the disk failing) leaves the previous one, which
    /// still covers less than what is durable: recovery is then stricter than it could be, never looser.
    func markLoop() {
        _ = tw_set_thread_name("tw-journal-mark")
        lock.lock()
        while true {
            markerIdle = true
            while durablePosition.seq <= markedSeq && !markerStop { lock.wait(3) }
            markerIdle = false
            if durablePosition.seq <= markedSeq { break }
            let p = durablePosition
            lock.unlock()
            var ok = true
            do {
                try markFile.write(AckMark(generation: markFile.last.generation &+ 1, seq: p.seq, segmentFirstSeq: p.segmentFirstSeq,
                                           endOffset: p.end, time: .now(), hash: p.hash))
            } catch { ok = false }
            lock.lock()
            if ok { markedSeq = p.seq } else { markFailureCount += 1 }
            let due = tw_monotonic_ns() &+ (ok ? options.ackMarkIntervalNanos : 100_000_000)
            while !markerStop && tw_monotonic_ns() < due { lock.wait(3, until: due) }
            if markerStop && !ok { break }
        }
        lock.unlock()
    }

    /// The sequence the ack mark on disk covers, and how many marks failed to be written.
    public var ackMarkState: (marked: UInt64, failures: Int) {
        lock.lock(); defer { lock.unlock() }
        return (markedSeq, markFailureCount)
    }

    // MARK: The verifier thread

    /// Checks the segments open did not read, oldest first: every CRC, sequence and chain link, and that each
    /// ends where the next begins; replaces each one's single index entry with its sparse index. Stops at the
    /// first damage, which it reports.
    func verifyLoop() {
        _ = tw_set_thread_name("tw-journal-verify")
        _ = tw_set_thread_nice(19)
        _ = tw_set_thread_io_idle()
        var prevHash = RecordHash.zero
        lock.lock()
        let count = unverifiedSegments
        lock.unlock()
        for i in 0..<count {
            lock.lock()
            let stop = closing, segment = segments[i], next = segments[i + 1]
            lock.unlock()
            if stop { return }
            var entries: [IndexEntry] = []
            var since = options.indexEvery
            let path = directory + "/" + segment.name
            let damage: JournalCorruption?
            do {
                let bytes = try FileIO.readFile(path)
                let scan = bytes.withUnsafeBytes { b in
                    SegmentScanner.scan(b, firstSeq: segment.firstSeq, prevHash: prevHash) { off, seq, _ in
                        if since == options.indexEvery { entries.append(IndexEntry(seq: seq, segment: i, offset: Int64(off))); since = 0 }
                        since += 1
                    }
                }
                if let p = scan.problem {
                    damage = JournalCorruption(segment: segment.name, offset: p.offset, seq: p.seq, reason: p.reason)
                } else if scan.nextSeq != next.firstSeq || scan.lastHash != next.prevHash {
                    damage = JournalCorruption(segment: next.name, offset: 0, seq: next.firstSeq,
                                               reason: "segment does not continue the chain: the previous segment ends at record \(scan.nextSeq &- 1) with a different hash than this header's link")
                } else {
                    damage = nil
                }
                prevHash = scan.lastHash
            } catch {
                damage = JournalCorruption(segment: segment.name, offset: 0, seq: segment.firstSeq, reason: "unreadable: \(error)")
            }
            lock.lock()
            if damage == nil, let at = index.firstIndex(where: { $0.segment == i }) {
                index.replaceSubrange(at...at, with: entries)
                verifiedSegments = i + 1
            }
            if damage != nil { damageFound = damage }
            lock.unlock()
            if let damage {
                options.onDamage?(damage)
                return
            }
        }
    }

    /// Damage the background verifier found in segments open did not read (nil: none, or not yet checked).
    public var backgroundDamage: JournalCorruption? {
        lock.lock(); defer { lock.unlock() }
        return damageFound
    }

    /// Whether every segment has been checked, at open or since by the verifier, and found whole.
    public var fullyVerified: Bool {
        lock.lock(); defer { lock.unlock() }
        return damageFound == nil && verifiedSegments == unverifiedSegments
    }

    // MARK: The preparer thread

    /// Waits for the sync thread's call, then fills the next segment's file with zeros and syncs it.
    func prepareLoop() {
        _ = tw_set_thread_name("tw-journal-prep")
        // Background work: everything else runs first, on the CPUs and at the disk (where the I/O scheduler honours
        // classes, as mq-deadline and bfq do).
        _ = tw_set_thread_nice(19)
        _ = tw_set_thread_io_idle()
        lock.lock()
        while true {
            while preparation != .preparing && !closing { lock.wait(2) }
            if closing { break }
            lock.unlock()
            let ok = prepareFile()
            lock.lock()
            if ok {
                preparation = .ready
                preparedCount += 1
            } else {
                preparation = .none
                preparationBlocked = true
                preparationFailureCount += 1
            }
        }
        lock.unlock()
    }

    /// Writes `segmentBytes` of zeros to the prepared file in 256 KiB steps, each written back to the device
    /// before the next (so the device is never busy with more than one step when a group commit's flush arrives)
    /// without a file-system journal commit per step; then one `fdatasync` commits the allocation and size, and
    /// the directory is synced. On failure (ENOSPC, say) or when the journal closes, removes the file and
    /// returns false.
    func prepareFile() -> Bool {
        let path = directory + "/" + Journal.preparedName
        let step = 256 << 10
        let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: step, alignment: 4096)
        zeros.initializeMemory(as: UInt8.self, repeating: 0)
        defer { zeros.deallocate() }
        do {
            let pfd = try FileIO.open(path, O_WRONLY | O_CREAT | O_TRUNC)
            defer { Glibc.close(pfd) }
            var written: Int64 = 0
            while written < options.segmentBytes {
                lock.lock(); let stop = closing; lock.unlock()
                if stop { throw JournalError.closed }
                let n = Int(min(Int64(step), options.segmentBytes - written))
                try FileIO.writeAll(pfd, UnsafeRawBufferPointer(rebasing: zeros[0..<n]), path: path)
                let t0 = tw_monotonic_ns()
                let e = tw_write_back_range(pfd, written, Int64(n))
                if e != 0 { throw JournalError.io(operation: "sync_file_range", path: path, errno: e) }
                written += Int64(n)
                // Leave the device to the group commits most of the time: a step's writes delay any commit flush
                // that arrives during them, so steps are short and at most a fifth of the time.
                usleep(UInt32(min(20_000, max(0, 4 * (tw_monotonic_ns() - t0)) / 1000)))
            }
            try FileIO.syncData(pfd, path: path)
            try FileIO.syncDirectory(directory)
            return true
        } catch {
            _ = unlink(path)
            return false
        }
    }
}
