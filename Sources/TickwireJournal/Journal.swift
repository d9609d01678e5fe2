import CTickwireSys
import Synchronization
import TickwireCore
#if canImport(Glibc)
import Glibc
#endif

/// How a journal writes and what it does when it finds damage.
public struct JournalOptions: Sendable {
    public enum Sync: Sendable {
        /// `fdatasync` before a record counts as durable (the default; what trades need).
        case data
        /// Never sync: durable means "in the page cache" (benchmarks and tests of the page-cache rate only).
        case none
    }
    public enum CorruptionPolicy: Sendable {
        /// Refuse to open past a damaged record in the middle (the default): `JournalError.corrupt`.
        case refuse
        /// Keep the records before the damage; move the damaged segment and every later one to
        /// `quarantine/` (nothing is deleted) and continue from the last good record. An operator's decision.
        case truncate
    }
    /// A segment rolls to a new file when the next record would take it past this size.
    public var segmentBytes: Int64 = 64 << 20
    public var sync: Sync = .data
    public var onCorruption: CorruptionPolicy = .refuse
    /// One sparse index entry every this many records (and one at each segment start).
    public var indexEvery: Int = 64
    /// Write records into segments already filled with zeros and synced (prepared in the background), so a
    /// group commit's `fdatasync` flushes data only and never a new file size. Ignored when `sync` is `.none`.
    public var preExtendSegments = true
    /// Group commits that may be written and synced at once (1 or 2). With two, records that arrive while one
    /// commit's `fdatasync` runs start their own after half a typical commit instead of waiting for it to end;
    /// durability is still published in order. One by default: on the virtio disk measured (BENCHMARKS.md) the
    /// device serialises flushes, and two gained nothing at p50 and cost the many-appender case.
    public var syncThreads = 1
    /// Called on the sync thread after each group commit with the highest durable sequence, and once with the
    /// unchanged sequence when the journal stops on a failure (`Journal.failure` then says why).
    public var onDurable: (@Sendable (UInt64) -> Void)?
    /// Called on the sync thread with each group commit's `fdatasync` time in nanoseconds (for metrics).
    public var onSync: (@Sendable (Int64) -> Void)?
    /// Called once, on the verifier thread, with damage found in segments that open did not read (see
    /// `Journal.init(replayFrom:)`).
    public var onDamage: (@Sendable (JournalCorruption) -> Void)?
    /// The least time between two ack marks (`acked.mark`, written and synced by a thread of their own after
    /// group commits): under load one mark covers many commits; after a lone commit it follows at once.
    public var ackMarkIntervalNanos: Int64 = 5_000_000

    public init(segmentBytes: Int64 = 64 << 20, sync: Sync = .data, onCorruption: CorruptionPolicy = .refuse,
                indexEvery: Int = 64, onDurable: (@Sendable (UInt64) -> Void)? = nil) {
        precondition(segmentBytes > Int64(JournalFormat.segmentHeaderSize) && indexEvery > 0)
        self.segmentBytes = segmentBytes; self.sync = sync; self.onCorruption = onCorruption
        self.indexEvery = indexEvery; self.onDurable = onDurable
    }
}

/// What opening found and did.
public struct RecoveryReport: Sendable, Equatable {
    /// Valid records in the journal after recovery.
    public var records: Int
    /// Bytes of a torn last record (or a torn segment header) cut off.
    public var truncatedBytes: Int64
    /// Damage skipped under `CorruptionPolicy.truncate`, and the files moved to `quarantine/`.
    public var skippedCorruption: JournalCorruption?
    /// Acknowledged records given up under `CorruptionPolicy.truncate` (damaged, missing, or after the damage):
    /// they are in `quarantine/` where their bytes survived; their sequences are reused by new records.
    public var lostAcknowledged: ClosedRange<UInt64>?
    public var quarantined: [String]
    /// The ack mark found at open (recovery then writes a new one for what it kept).
    public var ackMark: AckMark.Found
    /// Segments whose records open did not read (their headers checked; the verifier thread checks the rest).
    public var deferredSegments: Int
}

/// The durable, tamper-evident trade journal: append-only segment files of CRC-checked, hash-chained records.
///
/// Appends copy the record into a pending buffer under a short lock (sequence, CRC, SHA-256 chain link); one
/// parked sync thread writes everything pending with one `write` and one `fdatasync` (group commit), then wakes
/// whoever waits. `appendDurably` returns only after its record is on disk. Readers see durable records only.
///
/// Segments are pre-extended: once the segment being written holds `preparedAfterBytes`, a preparer thread fills
/// the next segment's file with zeros and syncs it, and the next roll renames it into place. Records then
/// overwrite zeros, so no group commit has to journal a new file size (an `fdatasync` of an overwrite cost 0.55–0.8×
/// one that extends the file, BENCHMARKS.md). A segment that was not pre-extended (a fresh journal's first, or
/// one cut back by recovery) rolls early, as soon as a prepared file is ready. Recovery reads trailing zeros as
/// unused space, and treats a hole of zero sectors inside the last, unacknowledged group commit as a torn tail.
///
/// One process at a time: opening takes an exclusive `flock` on `LOCK` in the directory.
public final class Journal: @unchecked Sendable {
    struct Segment {
        var firstSeq: UInt64
        var name: String
        var prevHash: RecordHash
    }
    /// Where a roll takes its file from.
    struct Roll {
        var at: Int
        var segment: Segment
        var prepared: Bool
    }
    /// The next segment's file, prepared ahead by the preparer thread.
    enum Preparation { case none, preparing, ready, claimed }
    struct IndexEntry {
        var seq: UInt64
        var segment: Int
        var offset: Int64
    }
    /// The last record of a group commit and where it ends: what an ack mark names once the commit is durable.
    struct Position {
        var seq: UInt64
        var segmentFirstSeq: UInt64
        var end: Int64
        var hash: RecordHash
    }

    public let directory: String
    public let options: JournalOptions
    public let recovery: RecoveryReport

    let lock = LockWithConditions()   // conditions: 0 work for the sync thread; 1 durability moved;
                                              // 2 work for the preparer; 3 work for the marker
    // Guarded by `lock`.
    var nextSeq: UInt64
    var lastHash: RecordHash
    var pending: [UInt8] = []
    var pendingRolls: [(at: Int, segment: Int, prepared: Bool)] = []
    var appendSegmentSize: Int64
    /// Whether the segment appenders are filling was pre-extended (else it rolls as soon as one is prepared).
    var appendSegmentPreExtended: Bool
    var preparation = Preparation.none
    /// A preparation failed (a full disk, say): no new one until the next roll.
    var preparationBlocked = false
    var preparedCount = 0
    var preparationFailureCount = 0
    var segments: [Segment]
    var index: [IndexEntry]
    var sinceIndex: Int
    var durableSeq: UInt64
    var failureError: JournalError?
    var closing = false
    var syncThreadExited = false
    var idleSyncThreads = 0
    var liveSyncThreads = 0
    /// Group commits taken and not yet finished; whether one of them rolls (and so owns the file).
    var inFlight = 0
    var exclusiveInFlight = false
    /// Commits are numbered as they are taken; a finished one waits in `finished` until every earlier one is.
    var nextTicket: UInt64 = 1
    var publishedTicket: UInt64 = 0
    var finished: [(ticket: UInt64, last: Position)] = []
    /// The last durable record's position, and the sequence the ack mark on disk covers.
    var durablePosition: Position
    var markedSeq: UInt64
    var markerStop = false
    /// The marker is waiting for a commit to mark (not resting after a mark): only then does a commit wake it.
    var markerIdle = false
    var markFailureCount = 0
    /// Segments at the front that open did not read (checked and indexed by the verifier), and damage found there.
    var unverifiedSegments = 0
    var verifiedSegments = 0
    var damageFound: JournalCorruption?
    /// When the latest commit in flight was taken, and a moving average of how long commits take (write + sync).
    var inFlightSince: Int64 = 0
    var commitNanosAverage: Int64 = 0
    /// After a failure: where the current file is cut back to once no commit is in flight.
    var cutBackTo: Int64?
    /// Serialises `onDurable` (a pthread mutex: ThreadSanitizer does not see Synchronization.Mutex's futex).
    let reportLock = LockWithConditions()
    // Guarded by `reportLock`: the last sequence given to `onDurable`, and whether the failure was reported.
    var reportedSeq: UInt64 = 0
    var reportedFailure = false
    let durable: Atomic<UInt64>
    /// Durability waiters sleep on a futex, not on the append lock: a group commit wakes all of them at once and
    /// none has to reacquire a mutex to leave (a condition variable made 64 acknowledged writers leave one by one).
    let wakeWords = DurabilityWakeWords()

    // After init, the sync threads': changed under the lock, or by a rolling commit, which runs alone.
    var fd: Int32
    /// Where the next record goes in the current file.
    var fileSize: Int64
    var currentPath: String
    /// The first sequence of the segment `fd` is open on.
    var currentFirstSeq: UInt64
    var lockFD: Int32
    var threads: [pthread_t] = []
    var preparer: pthread_t?
    var marker: pthread_t?
    var verifier: pthread_t?
    /// Written by the marker thread only (and by `close` after it has stopped).
    let markFile: AckMarkFile

    static let zeroHeader = [UInt8](repeating: 0, count: JournalFormat.recordHeaderSize)
    /// Unwritten bytes an appender may leave before it waits for the sync thread.
    static let maxPendingBytes = 4 << 20
    /// The most bytes the group commits in flight write (each: the pending limit and one more record; one segment
    /// header): at a crash, only the last this-many bytes of the journal can be written but not yet synced.
    static let maxUnsyncedBytes = maxSyncThreads * (maxPendingBytes + JournalFormat.recordHeaderSize + JournalFormat.maxPayload)
        + JournalFormat.segmentHeaderSize
    static let maxSyncThreads = 2
    /// The sync thread's nice value (the process's threads run at 0).
    static let syncThreadNice: Int32 = -10
    /// The name of the prepared, zero-filled file the next roll renames into place (never a segment's name).
    static let preparedName = "prepared.twj.tmp"
    /// The written bytes in a segment after which its successor is prepared.
    var preparedAfterBytes: Int64 { min(1 << 20, options.segmentBytes / 4) }
    var preExtending: Bool { options.preExtendSegments && options.sync == .data }

    /// Opens (or creates) the journal in `directory`, recovering it: segments are read, every CRC and chain link
    /// checked; a torn tail past the acknowledged records is cut off; damage stops the open unless `options` say
    /// `.truncate`.
    ///
    /// With `replayFrom` above 1 (the caller's state is checkpointed up to there), open reads whole only the
    /// segments from the one holding `replayFrom` or the ack mark's record, whichever is earlier; earlier segments
    /// have their headers checked, and a background thread (`tw-journal-verify`, idle priority) then checks their
    /// every CRC and chain link and indexes them: open stays flat as the journal grows. Damage found there is
    /// reported through `backgroundDamage` and `options.onDamage`; appending goes on.
    /// - Parameters:
    ///   - replayFrom: the first sequence `replay` must see.
    ///   - replay: sees every valid record from `replayFrom` on, in order, during recovery (to rebuild state).
    /// - Throws: `JournalError.corrupt` naming the sequence, segment and byte offset; `.io` for system failures.
    /// - Complexity: O(journal size) with `replayFrom` 1; else O(what follows the checkpoint and the mark).
    public init(directory: String, options: JournalOptions = JournalOptions(), replayFrom: UInt64 = 1,
                replay: ((JournalRecord) -> Void)? = nil) throws(JournalError) {
        self.directory = directory
        self.options = options
        try FileIO.makeDirectories(directory)
        lockFD = try FileIO.open(directory + "/LOCK", O_RDWR | O_CREAT)
        if flock(lockFD, LOCK_EX | LOCK_NB) != 0 {
            let e = errno
            Glibc.close(lockFD)
            throw JournalError.io(operation: "flock (is another process using this journal?)", path: directory + "/LOCK", errno: e)
        }
        let recovered: Recovered
        do { recovered = try Journal.recover(directory, options, replayFrom: replayFrom, replay: replay) } catch {
            Glibc.close(lockFD)
            throw error
        }
        let scan = recovered.scan, lastRecord = recovered.lastRecord
        var segs = recovered.segments
        // From here on the mark vouches for exactly what recovery kept (an operator's cut included).
        let lastGood = scan.nextSeq &- 1
        markFile = try AckMarkFile(directory: directory, sync: options.sync == .data, mark: AckMark(
            generation: (recovered.report.ackMark.mark?.generation ?? 0) &+ 1, seq: lastGood,
            segmentFirstSeq: lastGood == 0 ? 0 : scan.segments[lastRecord.segment].firstSeq,
            endOffset: lastGood == 0 ? 0 : lastRecord.end, time: .now(), hash: scan.lastHash))
        markedSeq = lastGood
        durablePosition = Position(seq: lastGood, segmentFirstSeq: markFile.last.segmentFirstSeq,
                                   end: markFile.last.endOffset, hash: scan.lastHash)
        recovery = recovered.report
        nextSeq = scan.nextSeq
        lastHash = scan.lastHash
        durableSeq = scan.nextSeq &- 1
        durable = Atomic(scan.nextSeq &- 1)
        // Segments whose records were not read get one entry at their first record until the verifier indexes them.
        let coarse = scan.segments.prefix(scan.headersOnly).enumerated().map {
            IndexEntry(seq: $0.element.firstSeq, segment: $0.offset, offset: Int64(JournalFormat.segmentHeaderSize))
        }
        self.index = coarse + recovered.index.filter { $0.segment < segs.count }
        unverifiedSegments = scan.headersOnly
        sinceIndex = recovered.sinceIndex
        // A prepared file left by a crash or a close is not trusted: it is made again when needed.
        if unlink(directory + "/" + Journal.preparedName) != 0 && errno != ENOENT {
            throw JournalError.fromErrno("unlink", directory + "/" + Journal.preparedName)
        }
        let allocated: Int64
        if segs.isEmpty {
            let first = Segment(firstSeq: scan.nextSeq, name: JournalFormat.segmentName(firstSeq: scan.nextSeq), prevHash: scan.lastHash)
            let path = directory + "/" + first.name
            fd = try FileIO.open(path, O_WRONLY | O_CREAT | O_TRUNC)
            try FileIO.writeAll(fd, JournalFormat.segmentHeader(firstSeq: first.firstSeq, created: .now(), prevHash: first.prevHash), path: path)
            try FileIO.syncData(fd, path: path)
            try FileIO.syncDirectory(directory)
            segs.append(first)
            fileSize = Int64(JournalFormat.segmentHeaderSize)
            allocated = fileSize
        } else {
            let path = directory + "/" + segs[segs.count - 1].name
            fd = try FileIO.open(path, O_WRONLY)
            // Appending continues after the last valid record; zeros after it are pre-extension.
            fileSize = scan.segments[segs.count - 1].endOffset
            allocated = try FileIO.fileSize(fd, path: path)
        }
        appendSegmentPreExtended = allocated >= options.segmentBytes
        // The next record opens an index run when the last segment has no entry yet.
        if self.index.last?.segment != segs.count - 1 { sinceIndex = options.indexEvery }
        segments = segs
        currentPath = directory + "/" + segs[segs.count - 1].name
        currentFirstSeq = segs[segs.count - 1].firstSeq
        appendSegmentSize = fileSize
        pending.reserveCapacity(Journal.maxPendingBytes + JournalFormat.recordHeaderSize + JournalFormat.maxPayload)
        precondition((1...Journal.maxSyncThreads).contains(options.syncThreads), "syncThreads must be 1 or 2")
        // Without fsync a commit is only a copy into the page cache: a second thread would only split batches.
        let syncThreads = options.sync == .data ? options.syncThreads : 1
        liveSyncThreads = syncThreads
        for _ in 0..<syncThreads { threads.append(startThread { [unowned self] in self.syncLoop() }) }
        if preExtending { preparer = startThread { [unowned self] in self.prepareLoop() } }
        marker = startThread { [unowned self] in self.markLoop() }
        if unverifiedSegments > 0 { verifier = startThread { [unowned self] in self.verifyLoop() } }
    }

    deinit { close() }

    // MARK: Appending

    /// Appends a record; it is durable once `waitDurable(seq)` returns (or `onDurable` reports it).
    /// - Parameter knownTime: when the record became known; nil is now. Replicas of one sequenced log pass the
    ///   log's own time, so that their records, and so their hash chains, are identical byte for byte.
    /// - Returns: the record's sequence (gapless, from 1).
    /// - Throws: `.payloadTooLarge`, `.closed`, or the failure that stopped the journal.
    /// - Complexity: O(payload): a copy, a CRC32C and a SHA-256 under the append lock.
    public func append(_ payload: UnsafeRawBufferPointer, eventTime: Nanos, knownTime: Nanos? = nil) throws(JournalError) -> UInt64 {
        guard payload.count <= JournalFormat.maxPayload else { throw .payloadTooLarge(bytes: payload.count) }
        let recordLength = Int64(JournalFormat.recordHeaderSize + payload.count)
        lock.lock()
        defer { lock.unlock() }
        // Back-pressure: past this much unwritten data, wait for the sync thread to take it. Bounds memory, and
        // keeps the buffer from being regrown and copied (an unbounded one halved the page-cache rate at 2M records).
        while pending.count >= Journal.maxPendingBytes && failureError == nil && !closing { lock.wait(1) }
        if let f = failureError { throw .stopped(after: f.description) }
        if closing { throw .closed }
        let seq = nextSeq
        let full = appendSegmentSize + recordLength > options.segmentBytes
        let early = !appendSegmentPreExtended && preparation == .ready
        if (full || early) && appendSegmentSize > Int64(JournalFormat.segmentHeaderSize) {
            let prepared = preparation == .ready
            if prepared { preparation = .claimed }
            segments.append(Segment(firstSeq: seq, name: JournalFormat.segmentName(firstSeq: seq), prevHash: lastHash))
            pendingRolls.append((pending.count, segments.count - 1, prepared))
            appendSegmentSize = Int64(JournalFormat.segmentHeaderSize)
            appendSegmentPreExtended = prepared
            sinceIndex = options.indexEvery
        }
        if sinceIndex >= options.indexEvery {
            index.append(IndexEntry(seq: seq, segment: segments.count - 1, offset: appendSegmentSize))
            sinceIndex = 0
        }
        sinceIndex += 1
        let at = pending.count
        pending.append(contentsOf: Journal.zeroHeader)
        pending.append(contentsOf: payload)
        let prev = lastHash
        lastHash = pending.withUnsafeMutableBytes { b in
            JournalFormat.sealRecord(b, at: at, payloadLength: payload.count, seq: seq, eventTime: eventTime,
                                     knownTime: knownTime ?? .now(), prevHash: prev)
        }
        appendSegmentSize += recordLength
        nextSeq = seq &+ 1
        // The first record of a new group commit is the one that can give an idle sync thread work.
        if at == 0 && idleSyncThreads > 0 { lock.signal(0) }
        return seq
    }

    public func append(_ payload: [UInt8], eventTime: Nanos, knownTime: Nanos? = nil) throws(JournalError) -> UInt64 {
        let r: Result<UInt64, JournalError> = payload.withUnsafeBytes { p in
            do { return .success(try append(p, eventTime: eventTime, knownTime: knownTime)) } catch { return .failure(error as! JournalError) }
        }
        return try r.get()
    }

    /// Appends and returns only once the record is durable (group commit with concurrent appenders).
    /// - Throws: as `append`, or the write/sync failure (`.diskFull`) that kept this record off the disk.
    public func appendDurably(_ payload: [UInt8], eventTime: Nanos) throws(JournalError) -> UInt64 {
        let seq = try append(payload, eventTime: eventTime)
        try waitDurable(seq)
        return seq
    }

    /// Blocks until record `seq` is durable.
    /// - Throws: the failure that kept it off the disk, or `.closed`.
    public func waitDurable(_ seq: UInt64) throws(JournalError) {
        if durable.load(ordering: .acquiring) >= seq { return }
        wakeWords.wait { durable.load(ordering: .acquiring) >= seq }
        if durable.load(ordering: .acquiring) >= seq { return }
        lock.lock()
        defer { lock.unlock() }
        // After a failure, wait for the commits still in flight: this record may be in one that succeeds.
        while durableSeq < seq && (failureError == nil || inFlight > 0) && !syncThreadExited { lock.wait(1) }
        if durableSeq >= seq { return }
        throw failureError ?? .closed
    }

    /// The highest durable sequence (0 when empty).
    public var durableSequence: UInt64 { durable.load(ordering: .acquiring) }

    /// The highest durable sequence and its record's SHA-256 (zeros when empty): what a checkpoint names.
    public var durableHead: (seq: UInt64, hash: RecordHash) {
        lock.lock(); defer { lock.unlock() }
        return (durablePosition.seq, durablePosition.hash)
    }

    /// Segment files prepared (zero-filled and synced) in the background, and preparations that failed (the
    /// journal then keeps appending to its segment, extending the file as it goes).
    public var preparedSegments: (prepared: Int, failed: Int) {
        lock.lock(); defer { lock.unlock() }
        return (preparedCount, preparationFailureCount)
    }

    /// Whether records are being written into a pre-extended segment (false until the first one is prepared).
    public var writingPreExtended: Bool {
        lock.lock(); defer { lock.unlock() }
        return appendSegmentPreExtended
    }

    /// Whether `directory`'s file system takes a group commit's worth of bytes again (after a full disk, say):
    /// writes them to a scratch file, `fdatasync`s it and removes it. A journal that stopped on a failure accepts
    /// nothing until it is reopened; this tells its owner when reopening can succeed.
    /// - Returns: nil when the write and sync succeeded, else the error.
    public static func probeWritable(directory: String, bytes: Int = 4 << 20) -> JournalError? {
        let path = directory + "/probe.tmp"
        do {
            let fd = try FileIO.open(path, O_WRONLY | O_CREAT | O_TRUNC)
            defer { Glibc.close(fd); unlink(path) }
            try FileIO.writeAll(fd, [UInt8](repeating: 0, count: bytes), path: path)
            try FileIO.syncData(fd, path: path)
            return nil
        } catch {
            return error
        }
    }

    /// The failure that stopped the journal, once it is settled: no commit is in flight any more, so
    /// `durableSequence` is final, and every record after it was refused or cut back. (With two sync threads a
    /// commit beside the failed one may still finish durably; until it has, this is nil.) Read it before the
    /// durable sequence: a caller that refuses what is past that sequence then refuses nothing durable.
    public var failure: JournalError? {
        lock.lock(); defer { lock.unlock() }
        return inFlight == 0 ? failureError : nil
    }

    /// Flushes what is pending, stops the sync thread and closes the segment. Idempotent.
    public func close() {
        lock.lock()
        closing = true
        lock.broadcast(0)
        lock.signal(2)
        let ts = threads, p = preparer, v = verifier
        threads = []
        preparer = nil
        verifier = nil
        lock.unlock()
        for t in ts { pthread_join(t, nil) }
        if let p { pthread_join(p, nil) }
        if let v { pthread_join(v, nil) }
        // The marker goes last, so its final mark covers every commit the sync threads finished.
        lock.lock()
        markerStop = true
        lock.signal(3)
        let m = marker
        marker = nil
        lock.unlock()
        if let m { pthread_join(m, nil) }
        markFile.close()
        // An unused prepared file is only zeros: free the space rather than leave it for the next open to delete.
        _ = unlink(directory + "/" + Journal.preparedName)
        if fd >= 0 { Glibc.close(fd); fd = -1 }
        // Release the directory at once: a reopen right after close must not depend on when ARC frees this object.
        if lockFD >= 0 { Glibc.close(lockFD); lockFD = -1 }
    }

}
