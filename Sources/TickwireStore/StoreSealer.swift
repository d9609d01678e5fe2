import TickwireCore
import CTickwireSys
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Seals a live store while its writer runs, on a thread of its own (never the writer's, never a feed's): each
/// log the writer closes becomes an immutable sealed chunk, and a trading date the writer is done with is sealed
/// whole (docs/STORAGE.md, "Sealing while running"). So a read of today maps sealed columns and builds only the
/// small tail still in logs.
///
/// The writer hands over only logs it has closed (`upTo`: the newest generation closed), so the sealer never
/// reads a log that is being appended to; the writer never reopens a handed-over log (it starts a new
/// generation). Failures are reported and counted; the logs stay and the next request for the partition tries
/// again.
public final class StoreSealer: @unchecked Sendable {
    public enum Request: Sendable, Equatable {
        /// Seal every log of the partition of generation `upTo` or lower into chunks.
        case chunks(PartitionKey, upTo: UInt64)
        /// The trading date is closed: seal it whole (merged into one segment when it holds at most
        /// `compactRows` rows, else its remaining logs as chunks).
        case day(PartitionKey, upTo: UInt64)
    }

    public let directory: String
    /// A closed date holding more rows than this stays in chunks: merging holds every row in memory (about
    /// 130 bytes a row at peak).
    public let compactRows: Int
    /// Once a partition has this many chunks, they are merged with its sealed segment (while it holds at most
    /// `compactRows` rows), so a read of today opens few pieces.
    public let mergeChunks: Int
    private let report: @Sendable (StoreIncident) -> Void
    private let fail: @Sendable (PartitionKey, StoreError) -> Void
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var queue: [Request] = []
    private var stopping = false
    private var busy = false
    private var thread: pthread_t?
    private var counts = Counts()

    public struct Counts: Sendable, Equatable {
        public var chunks: UInt64 = 0
        public var days: UInt64 = 0
        public var failures: UInt64 = 0
    }

    /// - Parameters:
    ///   - report: told of torn tails and quarantined logs met while sealing, on the sealer's thread.
    ///   - fail: told of a seal that failed (the partition keeps its logs), on the sealer's thread.
    public init(directory: String, compactRows: Int = 16_000_000, mergeChunks: Int = 8,
                report: @escaping @Sendable (StoreIncident) -> Void = StoreWriter.printToStandardError,
                fail: @escaping @Sendable (PartitionKey, StoreError) -> Void = { key, error in
                    StoreWriter.printToStandardError(.sealFailed(partition: key.relativePath, reason: error.description))
                }) {
        self.directory = directory
        self.compactRows = compactRows
        self.mergeChunks = max(2, mergeChunks)
        self.report = report
        self.fail = fail
        mutex.initialize(to: pthread_mutex_t())
        cond.initialize(to: pthread_cond_t())
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
    }

    deinit {
        finish()
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        cond.deallocate()
    }

    /// Starts the sealer's thread (named `tw-store-seal`, at nice 10 when allowed: it yields to the feed).
    public func start() {
        let box = Unmanaged.passRetained(self).toOpaque()
        var t = pthread_t()
        let rc = pthread_create(&t, nil, { arg in
            let sealer = Unmanaged<StoreSealer>.fromOpaque(arg!).takeRetainedValue()
            _ = tw_set_thread_name("tw-store-seal")
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(tw_gettid()), 10)
            sealer.run()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        thread = t
    }

    /// Queues a request (from the writer's thread); a request already queued is not queued twice.
    public func enqueue(_ r: Request) {
        pthread_mutex_lock(mutex)
        if !queue.contains(r) { queue.append(r) }
        pthread_cond_broadcast(cond)
        pthread_mutex_unlock(mutex)
    }

    public var sealed: Counts {
        pthread_mutex_lock(mutex); defer { pthread_mutex_unlock(mutex) }
        return counts
    }

    /// Waits until every request queued so far is done (or failed).
    public func drain() {
        pthread_mutex_lock(mutex)
        while !queue.isEmpty || busy { pthread_cond_wait(cond, mutex) }
        pthread_mutex_unlock(mutex)
    }

    /// Seals what is queued, then stops the thread and waits for it.
    public func finish() {
        pthread_mutex_lock(mutex)
        stopping = true
        pthread_cond_broadcast(cond)
        let t = thread
        thread = nil
        pthread_mutex_unlock(mutex)
        if let t { pthread_join(t, nil) }
    }

    private func run() {
        while true {
            pthread_mutex_lock(mutex)
            while queue.isEmpty && !stopping { pthread_cond_wait(cond, mutex) }
            if queue.isEmpty { pthread_mutex_unlock(mutex); return }
            let r = queue.removeFirst()
            busy = true
            pthread_mutex_unlock(mutex)
            let outcome = Self.perform(r, store: directory, compactRows: compactRows, mergeChunks: mergeChunks, report: report)
            pthread_mutex_lock(mutex)
            busy = false
            switch outcome {
            case .success(let chunk): if chunk { counts.chunks += 1 } else { counts.days += 1 }
            case .failure: counts.failures += 1
            }
            pthread_cond_broadcast(cond)
            pthread_mutex_unlock(mutex)
            if case .failure(let e) = outcome {
                switch r { case .chunks(let k, _), .day(let k, _): fail(k, e) }
            }
        }
    }

    /// Does one request on the calling thread. - Returns: whether it was a chunk request, or the failure.
    /// - Parameter mergeChunks: merge a partition's chunks into its segment once it has this many (nil: never).
    static func perform(_ r: Request, store: String, compactRows: Int, mergeChunks: Int? = nil,
                        report: (StoreIncident) -> Void) -> Result<Bool, StoreError> {
        do {
            switch r {
            case .chunks(let key, let upTo):
                let dir = store + "/" + key.relativePath
                for g in Layout.inspect(dir).liveLogs where g <= upTo {
                    try Sealing.sealChunk(store: store, key: key, generation: g, report: report)
                }
                // Every log up to the newest chunk is closed (the writer's log is always the newest generation):
                // the merge takes them too. Over `compactRows` it merges nothing (memory stays bounded).
                let files = Layout.inspect(dir)
                if let m = mergeChunks, files.liveChunks.count >= m, let newest = files.liveChunks.last {
                    try Sealing.seal(store: store, key: key, upTo: newest, compactRows: compactRows, report: report)
                }
                return .success(true)
            case .day(let key, let upTo):
                try Sealing.seal(store: store, key: key, upTo: upTo, compactRows: compactRows, report: report)
                return .success(false)
            }
        } catch {
            return .failure(error)
        }
    }
}
