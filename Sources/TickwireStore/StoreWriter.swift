import TickwireCore
import CTickwireSys
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Appends events to the store as they flow: each into the open partition of its trading date (UTC date of its
/// event time) and root (`MD.<VENUE>`, or the first token of any other subject).
///
/// Events are staged per partition in a block buffer and written as one checksummed log block when the block
/// fills; `flush()` writes partial blocks and forces every log to the device (`fdatasync`). A process crash
/// loses at most what was staged and not yet written; a machine crash what was not yet flushed; a torn tail is
/// cut when the partition is next opened. Sealing sorts and encodes a partition into column files.
///
/// The store's trouble never stops the caller: when a block cannot be written (a full disk), the log is cut back
/// to its last whole block, the block's events are dropped and counted in `lostEvents`, and writing is suspended
/// for `retryInterval`; events appended meanwhile are counted as lost too (nothing is held, so memory stays
/// bounded). The next write after the interval is the probe: if it succeeds, writing goes on and `report` gets
/// `.resumed` with the range lost; if not, another interval starts.
///
/// Threading: one thread owns a writer — every method must be called from it (or under the caller's own
/// serialization). `append` takes no lock and does not allocate once a partition and subject have been seen.
public final class StoreWriter {
    public let directory: String
    public let subjects: SubjectTable
    private let blockEvents: Int
    private var open: [PartitionKey: OpenPartition] = [:]
    /// At most this many partitions have a log open; the one used longest ago is flushed, synced and closed to make
    /// room (events with many distinct dates would otherwise exhaust the file descriptors).
    public let maxOpenPartitions: Int
    /// When each open partition was last switched to (a counter, not a clock).
    private var lastUsed: [PartitionKey: UInt64] = [:]
    private var useTick: UInt64 = 0
    /// Partitions closed to stay within `maxOpenPartitions`.
    public private(set) var partitionsEvicted: UInt64 = 0
    /// Partitions with a log open now.
    public var openPartitions: Int { open.count }
    // The per-event state below is not checked for exclusivity at run time: a writer is used by one thread, and
    // the check (a runtime call pair and a thread-local lookup per access) was about a sixth of the daemon's
    // store-writer thread.
    @exclusivity(unchecked) private var router: PartitionRouter
    /// The partition the previous event went to.
    @exclusivity(unchecked) private var last: OpenPartition?
    /// Held (`flock`) for the writer's lifetime: one writer per store directory.
    private let lock: OwnedFile

    /// Events given to `append`: each is stored, staged, or counted in `lostEvents`.
    @exclusivity(unchecked) public private(set) var appended: UInt64 = 0
    /// Events the store could not keep: blocks whose write failed, and events appended while writing was
    /// suspended after a failure.
    public private(set) var lostEvents: UInt64 = 0
    /// Block writes, flushes and log opens that failed.
    public private(set) var writeFailures: UInt64 = 0
    /// How long writing is suspended after a failure before the next write tries again.
    public static let retryInterval = Nanos.perSecond
    /// While writing is suspended: when to try again (monotonic ns); 0 while writing works.
    @exclusivity(unchecked) private var retryAt: Int64 = 0
    /// The failure that suspended writing, and the events lost since it began.
    private var failure: StoreError?
    private var lostSinceFailure = LostEvents()
    private let report: (StoreIncident) -> Void
    /// Events a log takes before it is closed and sealed as a chunk (nil: logs are not rolled).
    public let chunkEvents: Int?
    /// Seals closed logs and dates on its own thread; nil: chunks are sealed on the writer's thread.
    public let sealer: StoreSealer?
    /// The newest log generation this writer opened per partition: a new log always goes above it.
    private var newestGeneration: [PartitionKey: UInt64] = [:]
    /// Partitions opened since `closeDays` last looked at them, and whether it has looked at the whole store.
    private var written = Set<PartitionKey>()
    private var scannedStore = false
    /// Rows above which `seal` leaves a date in chunks rather than merging it (memory: about 130 bytes a row).
    public let compactRows: Int
    /// Torn log tails cut on recovery (partitions a crash left mid-block), and their bytes.
    public private(set) var tornTailsCut: UInt64 = 0
    public private(set) var tornBytesCut: UInt64 = 0

    /// Opens (creating it if needed) a store directory for writing; a second writer on the same directory, in
    /// this process or another, is refused. Partitions left open by an earlier run are
    /// recovered when first written to, or sealed by `seal`.
    /// - Parameters:
    ///   - directory: the store's root (`<data>/store`).
    ///   - subjects: the table the events' subject ids index.
    ///   - blockEvents: events per log block; each block is one `writev` and one checksum.
    ///   - report: told of every `StoreIncident` as it happens, on the writer's thread; by default they are
    ///     written to standard error.
    ///   - maxOpenPartitions: logs kept open at once (each one file descriptor and one block buffer).
    ///   - chunkEvents: roll a partition's log once it holds this many events, and seal the closed log as a chunk
    ///     (on `sealer`'s thread, or on the caller's when there is none), so that no log — and no seal — grows
    ///     with the day. Nil (the default) keeps one log per partition until `seal`.
    ///   - sealer: a running `StoreSealer` on the same directory for the closed logs (only with `chunkEvents`).
    ///   - compactRows: a date with more rows stays in chunks when sealed.
    public init(directory: String, subjects: SubjectTable, blockEvents: Int = 4096, maxOpenPartitions: Int = 64,
                chunkEvents: Int? = nil, sealer: StoreSealer? = nil, compactRows: Int = 16_000_000,
                report: @escaping (StoreIncident) -> Void = StoreWriter.printToStandardError) throws(StoreError) {
        precondition(blockEvents > 0 && blockEvents <= 1 << 20 && maxOpenPartitions > 0)
        precondition(sealer == nil || chunkEvents != nil, "a sealer needs chunkEvents")
        self.chunkEvents = chunkEvents.map { max($0, 1) }
        self.sealer = sealer
        self.compactRows = compactRows
        self.directory = directory
        self.maxOpenPartitions = maxOpenPartitions
        self.report = report
        self.subjects = subjects
        router = PartitionRouter(subjects: subjects)
        self.blockEvents = blockEvents
        try FS.makeDirectories(directory)
        lock = try OwnedFile(path: directory + "/LOCK", flags: O_RDWR | O_CREAT)
        guard flock(lock.fd, LOCK_EX | LOCK_NB) == 0 else {
            throw .io(operation: "lock (another StoreWriter has this store open)", path: lock.path, errno: errno)
        }
    }

    /// Writes an incident to standard error: the default `report`.
    public static func printToStandardError(_ incident: StoreIncident) {
        let line = Array("tickwire store: \(incident)\n".utf8)
        _ = line.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }

    /// Stages one event.
    /// - Throws: `StoreError.io` when a log cannot be opened or a block cannot be written. The writer has already
    ///   made itself consistent: the block's events are counted in `lostEvents`, and it tries again by itself
    ///   after `retryInterval` (so this throws at most once an interval).
    /// - Complexity: O(1); a block write every `blockEvents` events of a partition.
    @inline(__always)
    public func append(_ e: Event) throws(StoreError) {
        appended &+= 1
        if retryAt != 0 {
            guard tw_monotonic_ns() >= retryAt else { lose(seq: e.seq, eventTime: e.eventTime.rawValue); return }
            retryAt = 0
        }
        if let key = router.key(for: e, hasCurrent: last != nil) {
            do { last = try partition(key) } catch {
                lose(seq: e.seq, eventTime: e.eventTime.rawValue)
                suspend(error)
                throw error
            }
            router.enter()
        }
        let p = last.unsafelyUnwrapped
        if p.stage(e, subjects: subjects) {
            try writeBlock(p)
            if let c = chunkEvents, p.logEvents >= c { try roll(p) }
        }
    }

    /// Closes a partition's log (written and synced first) and hands it over to be sealed as a chunk; the
    /// partition's next event starts a new log.
    private func roll(_ p: OpenPartition) throws(StoreError) {
        try flush(p)
        open[p.key] = nil
        lastUsed[p.key] = nil
        last = nil
        try handOver(.chunks(p.key, upTo: p.generation))
    }

    /// Gives a sealing request to the sealer, or (without one) does it here.
    private func handOver(_ r: StoreSealer.Request) throws(StoreError) {
        if let sealer { sealer.enqueue(r); return }
        try StoreSealer.perform(r, store: directory, compactRows: compactRows, report: report).get()
    }

    private func writeBlock(_ p: OpenPartition) throws(StoreError) {
        do { try p.writeBlock() } catch {
            p.dropStaged { seq, eventTime in lose(seq: seq, eventTime: eventTime) }
            suspend(error)
            throw error
        }
        if failure != nil { resume() }
    }

    private func flush(_ p: OpenPartition) throws(StoreError) {
        try writeBlock(p)
        do { try p.sync() } catch { suspend(error); throw error }
    }

    private func lose(seq: UInt64, eventTime: Int64) {
        lostEvents += 1
        lostSinceFailure.add(seq: seq, eventTime: eventTime)
    }

    /// Stops writing for `retryInterval` after a failure.
    private func suspend(_ error: StoreError) {
        writeFailures += 1
        failure = error
        retryAt = tw_monotonic_ns() + Self.retryInterval
        last = nil
    }

    /// A write worked after a failure: reports what was lost meanwhile.
    private func resume() {
        failure = nil
        report(.resumed(lost: lostSinceFailure))
        lostSinceFailure = LostEvents()
    }

    /// Stages a batch of events (what a ring consumer drains at once).
    public func append(contentsOf events: UnsafeBufferPointer<Event>) throws(StoreError) {
        for e in events { try append(e) }
    }

    private func partition(_ key: PartitionKey) throws(StoreError) -> OpenPartition {
        useTick &+= 1
        if let p = open[key] { lastUsed[key] = useTick; return p }
        if open.count >= maxOpenPartitions, let (oldest, _) = lastUsed.min(by: { $0.value < $1.value }) {
            // Its staged events are written and synced before the log is closed, so `flush` keeps its promise for
            // them; if that fails they are counted lost (as any failed write) and the log is closed all the same.
            let evicted = open.removeValue(forKey: oldest)!
            lastUsed[oldest] = nil
            partitionsEvicted += 1
            try flush(evicted)
            if chunkEvents != nil { try handOver(.chunks(oldest, upTo: evicted.generation)) }
        }
        let p = try OpenPartition(key: key, store: directory, subjects: subjects, blockEvents: blockEvents,
                                  fresh: chunkEvents != nil, above: newestGeneration[key] ?? 0, report: report)
        newestGeneration[key] = p.generation
        written.insert(key)
        // Logs an earlier run left: closed now, so they can be sealed as chunks.
        if sealer != nil, let g = p.earlierLogs.last { sealer!.enqueue(.chunks(key, upTo: g)) }
        if p.tornBytesCut > 0 { tornTailsCut += 1; tornBytesCut += UInt64(p.tornBytesCut) }
        open[key] = p
        lastUsed[key] = useTick
        return p
    }

    /// Writes every staged event and forces the logs to the device. After it returns, a crash of the process or
    /// the machine loses nothing appended before the call but what `lostEvents` counts.
    /// - Throws: `StoreError.io` when a block cannot be written or a log synced (its events are counted lost, as
    ///   in `append`); while writing is suspended, the error that suspended it, without trying again before
    ///   `retryInterval` has passed.
    public func flush() throws(StoreError) {
        if retryAt != 0, let error = failure {
            guard tw_monotonic_ns() >= retryAt else { throw error }
            retryAt = 0
        }
        for key in open.keys.sorted() { try flush(open[key]!) }
        if failure != nil { resume() }
    }

    /// Seals partitions — this writer's open ones and any left open on disk by earlier runs — whose trading date
    /// is before `before` (all when nil): sorts them by (subject, event time, known time), encodes their columns,
    /// writes them durably and removes their logs. Later events for a sealed date open a new log; the next seal
    /// merges it with the sealed segment.
    /// - Returns: the partitions sealed.
    @discardableResult
    public func seal(before: Nanos? = nil) throws(StoreError) -> [PartitionKey] {
        let cutoff = before.map { Layout.day(of: $0.rawValue) } ?? .max
        // The sealer must not work on a partition sealed here at the same time.
        sealer?.drain()
        var sealed = [PartitionKey]()
        for key in Layout.partitions(in: directory) where key.day < cutoff {
            // Flushed before it is closed: if the flush fails, the partition stays open with what it still holds.
            if let p = open[key] { try flush(p); open[key] = nil; lastUsed[key] = nil }
            if try Sealing.seal(store: directory, key: key, compactRows: compactRows, report: report) != nil {
                sealed.append(key)
            }
        }
        last = nil
        return sealed
    }

    /// Hands every date before `before` to the sealer to be sealed whole: the open logs of those dates are
    /// flushed and closed first, and dates an earlier run left unsealed are included. Call it from the writer's
    /// thread now and then (the daemon does once a minute): a date is sealed soon after it ends.
    /// - Returns: the partitions handed over.
    @discardableResult
    public func closeDays(before: Nanos) throws(StoreError) -> [PartitionKey] {
        let cutoff = Layout.day(of: before.rawValue)
        var handed = [PartitionKey]()
        for key in open.keys.sorted() where key.day < cutoff {
            let p = open[key]!
            try flush(p)
            open[key] = nil
            lastUsed[key] = nil
            last = nil
        }
        // The whole store once (dates an earlier run left); then only the partitions this writer wrote since.
        let candidates = scannedStore ? written.filter { $0.day < cutoff }.sorted() : Layout.partitions(in: directory).filter { $0.day < cutoff }
        scannedStore = true
        for key in candidates {
            written.remove(key)
            let files = Layout.inspect(directory + "/" + key.relativePath)
            let pieces = files.liveChunks.count + (files.sealedGeneration == nil ? 0 : 1)
            guard !files.liveLogs.isEmpty || pieces > 1 else { continue }
            let upTo = max(files.nextGeneration - 1, newestGeneration[key] ?? 0)
            try handOver(.day(key, upTo: upTo))
            handed.append(key)
        }
        return handed
    }

    /// Closes every open log and hands each to be sealed: dates before `before` whole, later ones as chunks.
    /// With a sealer, `sealer.finish()` afterwards waits for them. The writer stays usable.
    public func handOverAll(before: Nanos) throws(StoreError) {
        try closeDays(before: before)
        for key in open.keys.sorted() {
            let p = open[key]!
            try flush(p)
            open[key] = nil
            lastUsed[key] = nil
            last = nil
            try handOver(.chunks(key, upTo: p.generation))
        }
    }

    /// Flushes and closes every open log and releases the directory to another writer; the partitions stay
    /// open on disk until sealed. Use no method but `close` afterwards.
    /// - Throws: `StoreError.io` when the last flush fails; its staged events are counted lost, `report` gets
    ///   `.closedFailing`, and the directory is released all the same.
    public func close() throws(StoreError) {
        defer {
            open.removeAll()
            lastUsed.removeAll()
            last = nil
            flock(lock.fd, LOCK_UN)
        }
        retryAt = 0
        do { try flush() } catch {
            for p in open.values { p.dropStaged { seq, eventTime in lose(seq: seq, eventTime: eventTime) } }
            report(.closedFailing(lost: lostSinceFailure))
            throw error
        }
    }
}
