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

    private let lock = LockWithConditions()   // conditions: 0 work for the sync thread; 1 durability moved;
                                              // 2 work for the preparer; 3 work for the marker
    // Guarded by `lock`.
    private var nextSeq: UInt64
    private var lastHash: RecordHash
    private var pending: [UInt8] = []
    private var pendingRolls: [(at: Int, segment: Int, prepared: Bool)] = []
    private var appendSegmentSize: Int64
    /// Whether the segment appenders are filling was pre-extended (else it rolls as soon as one is prepared).
    private var appendSegmentPreExtended: Bool
    private var preparation = Preparation.none
    /// A preparation failed (a full disk, say): no new one until the next roll.
    private var preparationBlocked = false
    private var preparedCount = 0
    private var preparationFailureCount = 0
    private var segments: [Segment]
    private var index: [IndexEntry]
    private var sinceIndex: Int
    private var durableSeq: UInt64
    private var failureError: JournalError?
    private var closing = false
    private var syncThreadExited = false
    private var idleSyncThreads = 0
    private var liveSyncThreads = 0
    /// Group commits taken and not yet finished; whether one of them rolls (and so owns the file).
    private var inFlight = 0
    private var exclusiveInFlight = false
    /// Commits are numbered as they are taken; a finished one waits in `finished` until every earlier one is.
    private var nextTicket: UInt64 = 1
    private var publishedTicket: UInt64 = 0
    private var finished: [(ticket: UInt64, last: Position)] = []
    /// The last durable record's position, and the sequence the ack mark on disk covers.
    private var durablePosition: Position
    private var markedSeq: UInt64
    private var markerStop = false
    private var markFailureCount = 0
    /// Segments at the front that open did not read (checked and indexed by the verifier), and damage found there.
    private var unverifiedSegments = 0
    private var verifiedSegments = 0
    private var damageFound: JournalCorruption?
    /// When the latest commit in flight was taken, and a moving average of how long commits take (write + sync).
    private var inFlightSince: Int64 = 0
    private var commitNanosAverage: Int64 = 0
    /// After a failure: where the current file is cut back to once no commit is in flight.
    private var cutBackTo: Int64?
    /// Serialises `onDurable` (a pthread mutex: ThreadSanitizer does not see Synchronization.Mutex's futex).
    private let reportLock = LockWithConditions()
    // Guarded by `reportLock`: the last sequence given to `onDurable`, and whether the failure was reported.
    private var reportedSeq: UInt64 = 0
    private var reportedFailure = false
    private let durable: Atomic<UInt64>
    /// Durability waiters sleep on a futex, not on the append lock: a group commit wakes all of them at once and
    /// none has to reacquire a mutex to leave (a condition variable made 64 acknowledged writers leave one by one).
    private let wakeWords = DurabilityWakeWords()

    // After init, the sync threads': changed under the lock, or by a rolling commit, which runs alone.
    private var fd: Int32
    /// Where the next record goes in the current file.
    private var fileSize: Int64
    private var currentPath: String
    /// The first sequence of the segment `fd` is open on.
    private var currentFirstSeq: UInt64
    private var lockFD: Int32
    private var threads: [pthread_t] = []
    private var preparer: pthread_t?
    private var marker: pthread_t?
    private var verifier: pthread_t?
    /// Written by the marker thread only (and by `close` after it has stopped).
    private let markFile: AckMarkFile

    private static let zeroHeader = [UInt8](repeating: 0, count: JournalFormat.recordHeaderSize)
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
    private var preExtending: Bool { options.preExtendSegments && options.sync == .data }

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
        var index: [IndexEntry] = []
        var since = 0
        let every = options.indexEvery
        var lastSegment = -1
        // Where the last valid record ends: what a new ack mark vouches for.
        var lastRecord: (segment: Int, end: Int64) = (-1, 0)
        let found: AckMark.Found
        let scan: JournalScan
        do {
            // The mark is read before the segments: it never claims more than what the scan then finds on disk.
            found = try AckMark.read(directory: directory)
            // An operator's truncate reads everything: what it cuts and keeps must all have been checked.
            let readWholeFrom = options.onCorruption == .truncate ? 1 : found.mark.map { min(replayFrom, $0.segmentFirstSeq) } ?? 1
            scan = try JournalScan.run(directory, watch: found.mark?.seq ?? 0, headersOnlyBefore: readWholeFrom) { seg, bytes, off, seq, hash in
                if seg != lastSegment || since == every {
                    index.append(IndexEntry(seq: seq, segment: seg, offset: Int64(off)))
                    lastSegment = seg; since = 0
                }
                since += 1
                let len = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: off, as: UInt32.self))
                lastRecord = (seg, Int64(off + JournalFormat.recordHeaderSize) + Int64(len))
                if let replay, seq >= replayFrom { replay(JournalRecord(bytes, at: off, hash: hash, segment: "")) }
            }
        } catch {
            Glibc.close(lockFD)
            throw error
        }
        let verdict = scan.assess(found)
        var truncated: Int64 = 0
        var quarantined: [String] = []
        var segs = scan.segments.map { Segment(firstSeq: $0.firstSeq, name: $0.name, prevHash: $0.prevHash) }
        var skipped: JournalCorruption?
        if let corruption = verdict.corruption {
            guard options.onCorruption == .truncate else {
                Glibc.close(lockFD)
                throw JournalError.corrupt(corruption)
            }
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
        // From here on the mark vouches for exactly what recovery kept (an operator's cut included).
        let lastGood = scan.nextSeq &- 1
        markFile = try AckMarkFile(directory: directory, sync: options.sync == .data, mark: AckMark(
            generation: (found.mark?.generation ?? 0) &+ 1, seq: lastGood,
            segmentFirstSeq: lastGood == 0 ? 0 : scan.segments[lastRecord.segment].firstSeq,
            endOffset: lastGood == 0 ? 0 : lastRecord.end, time: .now(), hash: scan.lastHash))
        markedSeq = lastGood
        durablePosition = Position(seq: lastGood, segmentFirstSeq: markFile.last.segmentFirstSeq,
                                   end: markFile.last.endOffset, hash: scan.lastHash)
        recovery = RecoveryReport(records: scan.records, truncatedBytes: truncated, skippedCorruption: skipped,
                                  lostAcknowledged: skipped == nil ? nil : verdict.lostAcknowledged,
                                  quarantined: quarantined, ackMark: found, deferredSegments: scan.headersOnly)
        nextSeq = scan.nextSeq
        lastHash = scan.lastHash
        durableSeq = scan.nextSeq &- 1
        durable = Atomic(scan.nextSeq &- 1)
        // Segments whose records were not read get one entry at their first record until the verifier indexes them.
        let coarse = scan.segments.prefix(scan.headersOnly).enumerated().map {
            IndexEntry(seq: $0.element.firstSeq, segment: $0.offset, offset: Int64(JournalFormat.segmentHeaderSize))
        }
        self.index = coarse + index.filter { $0.segment < segs.count }
        unverifiedSegments = scan.headersOnly
        sinceIndex = since
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
        if self.index.last?.segment != segs.count - 1 { sinceIndex = every }
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
        while durableSeq < seq && failureError == nil && !syncThreadExited { lock.wait(1) }
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

    /// The failure that stopped the journal, if any.
    public var failure: JournalError? {
        lock.lock(); defer { lock.unlock() }
        return failureError
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

    // MARK: The sync threads

    /// A sync thread takes what is pending as one group commit when there is work and the commit may run beside
    /// those in flight: one that rolls a segment runs alone, since it changes the file.
    private var canTakeBatch: Bool {
        !pending.isEmpty && failureError == nil && !exclusiveInFlight && inFlight < liveSyncThreads
            && (pendingRolls.isEmpty || inFlight == 0)
    }

    private func syncLoop() {
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
            } else if failureError == nil {
                finished.append((ticket, last))
                publishInOrder()
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
            if failureError != nil && inFlight == 0, let at = cutBackTo {
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
            let reported = durableSeq, failed = failureError != nil
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
    private func publishInOrder() {
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
            lock.signal(3)
        }
    }

    /// Calls `onDurable` from one sync thread at a time, with a sequence that never goes back (and once with the
    /// unchanged sequence when the journal has failed).
    private func report(_ seq: UInt64, failed: Bool) {
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
    private func writeAndSync(_ batch: [UInt8], at offset: Int64) throws(JournalError) {
        let r: Result<Void, JournalError> = batch.withUnsafeBytes { b in
            do { try FileIO.writeAll(fd, b, at: offset, path: currentPath); return .success(()) }
            catch { return .failure(error as! JournalError) }
        }
        try r.get()
        try syncTimed()
    }

    private func syncTimed() throws(JournalError) {
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
    private func writeRolling(_ batch: [UInt8], rolls: [Roll], failedAt: inout Int64, durablePart: inout Position?) throws(JournalError) {
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

    private func writeChunk(_ bytes: [UInt8]) throws(JournalError) {
        let r: Result<Void, JournalError> = bytes.withUnsafeBytes { b in
            do { try writeChunk(b); return .success(()) } catch { return .failure(error as! JournalError) }
        }
        try r.get()
    }

    /// Writes at the end of the current file's records (only a rolling commit, which runs alone, calls it).
    private func writeChunk(_ bytes: UnsafeRawBufferPointer) throws(JournalError) {
        if bytes.isEmpty { return }
        try FileIO.writeAll(fd, bytes, at: fileSize, path: currentPath)
        fileSize += Int64(bytes.count)
    }

    // MARK: The marker thread

    /// Writes an ack mark for the newest durable commit, then rests `ackMarkIntervalNanos` so that under load one
    /// mark covers many commits. A mark that cannot be written (the disk failing) leaves the previous one, which
    /// still covers less than what is durable: recovery is then stricter than it could be, never looser.
    private func markLoop() {
        _ = tw_set_thread_name("tw-journal-mark")
        lock.lock()
        while true {
            while durablePosition.seq <= markedSeq && !markerStop { lock.wait(3) }
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
    private func verifyLoop() {
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
    private func prepareLoop() {
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
    private func prepareFile() -> Bool {
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

    // MARK: Reading

    /// The durable record with sequence `seq`, found through the sparse index (one positioned read, then at
    /// most `indexEvery - 1` record headers skipped).
    /// - Throws: `.noSuchRecord` when it is not durable or does not exist; `.corrupt` when its CRC fails.
    public func record(_ seq: UInt64) throws(JournalError) -> JournalRecord {
        let found = try records(from: seq, limit: 1)
        guard let r = found.first, r.seq == seq else { throw .noSuchRecord(seq: seq) }
        return r
    }

    /// Up to `limit` durable records from `seq` on, in order.
    public func records(from seq: UInt64, limit: Int) throws(JournalError) -> [JournalRecord] {
        lock.lock()
        let upTo = durableSeq
        guard seq >= 1, seq <= upTo, limit > 0, !index.isEmpty else { lock.unlock(); return [] }
        var lo = 0, hi = index.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if index[mid].seq <= seq { lo = mid } else { hi = mid - 1 }
        }
        let start = index[lo]
        let segs = segments
        lock.unlock()
        var reader = SegmentReader(directory: directory, segments: segs.map(\.name))
        defer { reader.close() }
        return try reader.read(from: start.segment, offset: start.offset, firstWanted: seq, upTo: upTo, limit: limit)
    }
}

/// Reads records sequentially from segment files, checking each CRC (the chain was checked at open).
struct SegmentReader {
    let directory: String
    let segments: [String]
    private var fd: Int32 = -1
    private var buffer = [UInt8](repeating: 0, count: 1 << 16)

    init(directory: String, segments: [String]) { self.directory = directory; self.segments = segments }

    mutating func close() { if fd >= 0 { Glibc.close(fd); fd = -1 } }

    mutating func read(from segmentIndex: Int, offset: Int64, firstWanted: UInt64, upTo: UInt64,
                       limit: Int) throws(JournalError) -> [JournalRecord] {
        var out: [JournalRecord] = []
        var seg = segmentIndex, off = offset
        close()
        while out.count < limit && seg < segments.count {
            let name = segments[seg], path = directory + "/" + name
            if fd < 0 { fd = try FileIO.open(path, O_RDONLY) }
            var header = [UInt8](repeating: 0, count: JournalFormat.recordHeaderSize)
            let n = try FileIO.pread(fd, into: &header, count: header.count, at: off, path: path)
            let len = header.withUnsafeBytes { Int(UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 0, as: UInt32.self))) }
            let seq = header.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)) }
            // The end of the file, or of the records in a pre-extended one (a record's sequence is never 0).
            if n == 0 || (seq == 0 && len == 0) { close(); seg += 1; off = Int64(JournalFormat.segmentHeaderSize); continue }
            if seq > upTo { break }
            let total = JournalFormat.recordHeaderSize + len
            guard n == JournalFormat.recordHeaderSize, len <= JournalFormat.maxPayload else {
                throw .corrupt(JournalCorruption(segment: name, offset: off, seq: seq, reason: "record header unreadable"))
            }
            if seq >= firstWanted {
                if buffer.count < total { buffer = [UInt8](repeating: 0, count: total) }
                let got = try FileIO.pread(fd, into: &buffer, count: total, at: off, path: path)
                let record: JournalRecord? = buffer.withUnsafeBytes { b in
                    let body = UnsafeRawBufferPointer(rebasing: b[0..<total])
                    guard got == total,
                          UInt32(littleEndian: body.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
                            == JournalFormat.recordCRC(body, at: 0, payloadLength: len) else { return nil }
                    var r = JournalRecord(body, at: 0, hash: RecordHash(sha256: body), segment: name)
                    r.offset = off
                    return r
                }
                guard let record else {
                    throw .corrupt(JournalCorruption(segment: name, offset: off, seq: seq, reason: "CRC32C mismatch on read"))
                }
                out.append(record)
            }
            off += Int64(total)
        }
        return out
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
