import CTickwireSys
import Synchronization
import TickwireCore
#if canImport(Glibc)
import Glibc
#endif

/// How a journal writes and what it does when it finds damage.

/// Group commit: the sync threads take what appenders left pending as one write and one `fdatasync`, roll
/// segments, publish durability in order and wake the waiters (docs/STORAGE.md, "Journal").
extension Journal {
    // MARK: The sync threads

    /// A sync thread takes what is pending as one group commit when there is work and the commit may run beside
    /// those in flight: one that rolls a segment runs alone, since it changes the file.
    var canTakeBatch: Bool {
        !pending.isEmpty && failureError == nil && !exclusiveInFlight && inFlight < liveSyncThreads
            && (pendingRolls.isEmpty || inFlight == 0)
    }

    func syncLoop() {
        // Every acknowledgement waits on these threads: ask the scheduler to run them before the appenders (and
        // the rest of the process) when they compete for the CPUs. Without CAP_SYS_NICE this fails and changes
        // nothing.
        _ = tw_set_thread_name("tw-journal-sync")
        _ = tw_set_thread_nice(Journal.syncThreadNice)
        var batch: [UInt8] = []
        batch.reserveCapacity(Journal.maxPendingBytes + JournalFormat.recordHeaderSize + JournalFormat.maxPayload)
        lock.lock()
        while true {
            while failureError == nil && !(closing && pending.isEmpty) {
                idleSyncThreads += 1
                defer { idleSyncThreads -= 1 }
                guard canTakeBatch else { lock.wait(0); continue }
                if inFlight == 0 { break }
                // Beside a commit in flight, start a second only once the first has run half a typical commit:
                // records that arrive meanwhile then share it (fewer, larger commits; fewer waiters woken for
                // nothing), and none waits more than that half before its own sync starts.
                let due = inFlightSince &+ commitNanosAverage / 2
                if tw_monotonic_ns() >= due { break }
                lock.wait(0, until: due)
            }
            guard canTakeBatch else { break }
            swap(&batch, &pending)
            let rolls = pendingRolls.map { Roll(at: $0.at, segment: segments[$0.segment], prepared: $0.prepared) }
            pendingRolls.removeAll(keepingCapacity: true)
            let last = Position(seq: nextSeq &- 1, segmentFirstSeq: segments[segments.count - 1].firstSeq,
                                end: appendSegmentSize, hash: lastHash)
            let ticket = nextTicket
            nextTicket &+= 1
            inFlight += 1
            let started = tw_monotonic_ns()
            inFlightSince = started
            // A batch that rolls owns the file until it is done; any other claims its bytes now, so two can write
            // and sync side by side.
            let offset = fileSize
            if rolls.isEmpty { fileSize += Int64(batch.count) } else { exclusiveInFlight = true }
            lock.unlock()

            var failedAt: Int64 = offset
            var durablePart: Position?
            let outcome: JournalError?
            do {
                if rolls.isEmpty { try writeAndSync(batch, at: offset) } else {
                    try writeRolling(batch, rolls: rolls, failedAt: &failedAt, durablePart: &durablePart)
                }
                outcome = nil
            } catch { outcome = error }

            lock.lock()
            inFlight -= 1
            commitNanosAverage += (tw_monotonic_ns() - started - commitNanosAverage) / 8
            if !rolls.isEmpty { exclusiveInFlight = false }
            if let outcome {
                if failureError == nil { failureError = outcome }
                if let durablePart {
                    finished.append((ticket, durablePart))
                    publishInOrder()
                }
                pending.removeAll()
                pendingRolls.removeAll()
                cutBackTo = min(cutBackTo ?? .max, failedAt)
            } else {
                // Durable, even if a commit beside it has failed meanwhile: published (in order), not left on disk
                // unacknowledged. One taken after a failed one stays unpublished and is cut back with it.
                finished.append((ticket, last))
                publishInOrder()
                if failureError == nil {
                    if !rolls.isEmpty {
                        preparationBlocked = false
                        if preparation == .claimed && rolls.contains(where: \.prepared) { preparation = .none }
                    }
                    if preExtending && preparation == .none && !preparationBlocked
                        && fileSize >= Int64(JournalFormat.segmentHeaderSize) + preparedAfterBytes {
                        preparation = .preparing
                        lock.signal(2)
                    }
                }
            }
            // A failure is settled once no commit is in flight: the one beside it may still finish durably.
            let settled = failureError != nil && inFlight == 0
            if settled, let at = cutBackTo {
                // Nothing past the last acknowledged commit may stay: cut the file back to a record boundary.
                cutBackTo = nil
                if fd >= 0 {
                    _ = ftruncate(fd, off_t(at))
                    if options.sync == .data { _ = fdatasync(fd) }
                }
            }
            // A sync thread may be waiting for this one to finish (a roll, or both were busy).
            if idleSyncThreads > 0 && (canTakeBatch || failureError != nil || closing) { lock.signal(0) }
            lock.broadcast(1)
            let reported = durableSeq, failed = settled
            lock.unlock()
            if failed { wakeWords.stop() } else { wakeWords.wakeAll() }
            report(reported, failed: failed)
            batch.removeAll(keepingCapacity: true)
            lock.lock()
        }
        liveSyncThreads -= 1
        let lastOut = liveSyncThreads == 0
        if lastOut {
            syncThreadExited = true
            lock.broadcast(1)
        }
        lock.unlock()
        if lastOut { wakeWords.stop() }
    }

    /// Publishes finished commits in the order they were taken: a commit that finishes before an earlier one
    /// waits for it, so the durable sequence only ever covers a gapless prefix. Call with the lock held.
    func publishInOrder() {
        var moved = false
        while let i = finished.firstIndex(where: { $0.ticket == publishedTicket &+ 1 }) {
            if finished[i].last.seq > durableSeq {
                durableSeq = finished[i].last.seq
                durablePosition = finished[i].last
            }
            publishedTicket &+= 1
            finished.remove(at: i)
            moved = true
        }
        if moved {
            durable.store(durableSeq, ordering: .releasing)
            // Resting after a mark, the marker is not woken by each commit (thousands a second under load) only to
            // rest again: it looks at the durable position when its rest is over.
            if markerIdle { lock.signal(3) }
        }
    }

    /// Calls `onDurable` from one sync thread at a time, with a sequence that never goes back (and once with the
    /// unchanged sequence when the journal has failed).
    func report(_ seq: UInt64, failed: Bool) {
        guard let onDurable = options.onDurable else { return }
        reportLock.lock()
        defer { reportLock.unlock() }
        if seq > reportedSeq || (failed && !reportedFailure) {
            reportedSeq = max(reportedSeq, seq)
            reportedFailure = reportedFailure || failed
            onDurable(reportedSeq)
        }
    }

    /// One group commit that rolls no segment: its bytes at the offset it claimed, then one `fdatasync`.
    func writeAndSync(_ batch: [UInt8], at offset: Int64) throws(JournalError) {
        let r: Result<Void, JournalError> = batch.withUnsafeBytes { b in
            do { try FileIO.writeAll(fd, b, at: offset, path: currentPath); return .success(()) }
            catch { return .failure(error as! JournalError) }
        }
        try r.get()
        try syncTimed()
    }

    func syncTimed() throws(JournalError) {
        guard options.sync == .data else { return }
        let t0 = Nanos.now().rawValue
        try FileIO.syncData(fd, path: currentPath)
        options.onSync?(Nanos.now().rawValue - t0)
    }

    /// One group commit that rolls segments where the appenders decided (run alone): the old file's part is
    /// written and synced, each new segment opened (a prepared one renamed into place) and its header written,
    /// the directory synced, then the rest written and synced once. `failedAt` is left at the offset in the
    /// current file where a failure should cut back to, and `durablePart` at the last record that reached the disk
    /// and was synced before a failure (the part before a roll): those records are durable whatever follows, and
    /// are published as such rather than refused and then found in the journal.
    func writeRolling(_ batch: [UInt8], rolls: [Roll], failedAt: inout Int64, durablePart: inout Position?) throws(JournalError) {
        var failed = fileSize
        var part: Position?
        let r: Result<Void, JournalError> = batch.withUnsafeBytes { b in
            do {
                var start = 0
                for roll in rolls {
                    try writeChunk(UnsafeRawBufferPointer(rebasing: b[start..<roll.at]))
                    if options.sync == .data { try FileIO.syncData(fd, path: currentPath) }
                    if roll.at > start {
                        part = Position(seq: roll.segment.firstSeq &- 1, segmentFirstSeq: currentFirstSeq, end: fileSize, hash: roll.segment.prevHash)
                    }
                    failed = fileSize
                    // The old file stays current until the new one is open, so a failure here cuts back the old one.
                    let path = directory + "/" + roll.segment.name
                    let next: Int32
                    if roll.prepared {
                        try FileIO.rename(directory + "/" + Journal.preparedName, path)
                        next = try FileIO.open(path, O_WRONLY)
                    } else {
                        next = try FileIO.open(path, O_WRONLY | O_CREAT | O_TRUNC)
                    }
                    Glibc.close(fd)
                    fd = next
                    fileSize = 0
                    failed = 0
                    currentPath = path
                    currentFirstSeq = roll.segment.firstSeq
                    let s = roll.segment
                    try writeChunk(JournalFormat.segmentHeader(firstSeq: s.firstSeq, created: .now(), prevHash: s.prevHash))
                    if options.sync == .data { try FileIO.syncDirectory(directory) }
                    failed = fileSize
                    start = roll.at
                }
                try writeChunk(UnsafeRawBufferPointer(rebasing: b[start...]))
                try syncTimed()
                return .success(())
            } catch {
                return .failure(error as! JournalError)
            }
        }
        failedAt = failed
        durablePart = part
        try r.get()
    }

    func writeChunk(_ bytes: [UInt8]) throws(JournalError) {
        let r: Result<Void, JournalError> = bytes.withUnsafeBytes { b in
            do { try writeChunk(b); return .success(()) } catch { return .failure(error as! JournalError) }
        }
        try r.get()
    }

    /// Writes at the end of the current file's records (only a rolling commit, which runs alone, calls it).
    func writeChunk(_ bytes: UnsafeRawBufferPointer) throws(JournalError) {
        if bytes.isEmpty { return }
        try FileIO.writeAll(fd, bytes, at: fileSize, path: currentPath)
        fileSize += Int64(bytes.count)
    }
}

/// The futex durability waiters sleep on: an epoch bumped at each group commit, a count of sleepers (so a commit
/// nobody waits for makes no system call), and a stop flag for a journal that failed or closed.
final class DurabilityWakeWords: @unchecked Sendable {
    private let epoch = UnsafeMutablePointer<Atomic<UInt32>>.allocate(capacity: 1)
    private let sleepers = Atomic<Int>(0)
    private let stopped = Atomic<Bool>(false)

    init() { epoch.initialize(to: Atomic(0)) }
    deinit { epoch.deinitialize(count: 1); epoch.deallocate() }

    private var futexWord: UnsafeMutablePointer<UInt32> { UnsafeMutableRawPointer(epoch).assumingMemoryBound(to: UInt32.self) }

    /// Sleeps until `done()` holds or the words are stopped.
    func wait(until done: () -> Bool) {
        while !done() && !stopped.load(ordering: .acquiring) {
            sleepers.wrappingAdd(1, ordering: .sequentiallyConsistent)
            let e = epoch.pointee.load(ordering: .sequentiallyConsistent)
            if !done() && !stopped.load(ordering: .sequentiallyConsistent) {
                // The 100 ms bound only limits the cost of a missed wake; every commit wakes exactly.
                _ = tw_futex_wait(futexWord, e, 100_000_000)
            }
            sleepers.wrappingSubtract(1, ordering: .sequentiallyConsistent)
        }
    }

    /// After a commit: wakes every sleeper to recheck.
    func wakeAll() {
        epoch.pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
        if sleepers.load(ordering: .sequentiallyConsistent) > 0 { _ = tw_futex_wake(futexWord, Int32.max) }
    }

    /// The journal stopped (failure or close): wakes everyone for good.
    func stop() {
        stopped.store(true, ordering: .sequentiallyConsistent)
        wakeAll()
    }
}
