import CTickwireSys
import Foundation
import Logging
import Synchronization
import TickwireCore
import TickwireFeeds
import TickwireRing
import TickwireZMQ

/// Why the daemon could not start; each says what to do about it.
public enum DaemonError: Error, CustomStringConvertible {
    case endpointBusy(String)
    case transport(String, ZMQError)
    case dataDirectory(String, String)
    case source(String, String)
    case config(ConfigError)

    public var description: String {
        switch self {
        case .endpointBusy(let e): "\(e) is already in use by another process (is another 'tickwire run' going? stop it or pass another endpoint)"
        case .transport(let what, let e): "\(what): \(e)"
        case .dataDirectory(let dir, let why): "data directory \(dir): \(why)"
        case .source(let spec, let why): "source '\(spec)': \(why)"
        case .config(let e): e.description
        }
    }
}

/// The feed handler: sources normalize into one broadcast ring; consumers fan the ring out to ZeroMQ and to
/// in-process subscribers. One owner per concern; this type only wires them and runs their threads.
///
/// Threads (2 cores): one per source, one for the ZeroMQ publisher (a blocking ring consumer: ZeroMQ itself
/// never blocks, it drops per subscriber at the high-water mark, so this stage slows the feed only when the
/// machine cannot encode and send as fast as the sources produce), the in-process subscription hub (lossy).
public final class Daemon: @unchecked Sendable {
    public let config: DaemonConfig
    public let subjects = SubjectTable()
    public let ring: BroadcastRing
    public let lastValues: LastValueCache
    public let context = ZMQContext()
    let logger: Logger
    let stop = StopSignal()
    private var threads: [Thread] = []
    private let running = Atomic<Int>(0)
    private var sources: [EventSource] = []
    private var publisher: ZMQPublisher!
    private var publishLatency = LatencyHistogram()
    private var publisherConsumer: RingConsumer!
    private var consumers: [RingConsumer] = []
    /// In-process subscriptions, fanned out through the subject router on their own thread.
    public let hub: SubscriptionHub
    private var metricsServer: MetricsServer?
    private var trades: TradeService?
    private var lockFD: Int32 = -1
    public let gapSubject: SubjectID
    public let startedAt = Nanos.now()

    public init(config: DaemonConfig, logger: Logger) {
        self.config = config
        self.logger = logger
        lastValues = LastValueCache(maxSubjects: 1 << 16)
        gapSubject = subjects.intern(text: "SYS.GAP")
        ring = BroadcastRing(capacity: config.ringCapacity, producers: .multi, gapSubject: gapSubject, lastValues: lastValues)
        hub = SubscriptionHub(subjects: subjects, gapSubject: gapSubject)
    }

    /// Opens the data directory, binds every endpoint, and starts every thread.
    /// - Throws: `DaemonError` — a busy endpoint, an unusable data directory, a bad source — before any thread runs.
    public func start() throws(DaemonError) {
        try openDataDirectory()
        sources = try makeSources()
        do {
            publisher = try ZMQPublisher(context: context, endpoint: config.publishEndpoint,
                                         highWaterMark: config.publishHighWaterMark, subjects: subjects)
            publishLatency = publisher.latency
        } catch {
            if error.addressInUse { throw .endpointBusy(config.publishEndpoint) }
            throw .transport("publishing on \(config.publishEndpoint)", error)
        }
        // TRADES: the trade service starts here (issue 5).
        let trades = TradeService(
            config: TradeServiceConfig(endpoint: config.tradeEndpoint), dataDirectory: config.dataDirectory, context: context,
            log: { [logger] in logger.notice("\($0)") },
            publish: { [ring, subjects] event, subject in
                var e = event
                e.subjectID = subjects.intern(text: subject)
                _ = ring.publish(e)
            })
        do { try trades.start() } catch {
            if case .bind(_, let e)? = error as? TradeServiceError, e.addressInUse { throw .endpointBusy(config.tradeEndpoint) }
            throw .dataDirectory(config.dataDirectory, "trades: \(error)")
        }
        self.trades = trades

        do {
            metricsServer = try MetricsServer(endpoint: config.metricsEndpoint) { [unowned self] path in
                path == "/metrics" ? MetricsText.render(self.statistics()) : nil
            }
        } catch {
            throw .endpointBusy("metrics \(config.metricsEndpoint) (\(error))")
        }
        spawn("metrics") { [self] in metricsServer!.run(stop: stop) }

        publisherConsumer = ring.addConsumer(name: "zmq-publisher", policy: .blocking, wait: .park)
        consumers.append(publisherConsumer)
        spawn("publisher") { [self] in runPublisher() }
        let hubConsumer = ring.addConsumer(name: "in-process-hub", policy: .lossy, wait: .park)
        consumers.append(hubConsumer)
        spawn("hub") { [self] in hub.run(consumer: hubConsumer) }
        for (index, source) in sources.enumerated() {
            // The source and its sink are used by this thread alone from here on.
            let owned = Unchecked((source, RingSink(ring: ring, subjects: subjects, source: UInt16(index))))
            spawn("source-\(source.name)") { [self] in
                let (source, sink) = owned.value
                do {
                    try source.run(into: sink, stop: stop)
                    logger.info("source finished", metadata: ["source": "\(source.name)"])
                } catch {
                    logger.error("source stopped: \(error)", metadata: ["source": "\(source.name)"])
                }
            }
        }
        logger.info("tickwire running", metadata: [
            "publish": "\(config.publishEndpoint)", "data": "\(config.dataDirectory)",
            "sources": "\(sources.map(\.name).joined(separator: ","))", "ring": "\(config.ringCapacity)",
        ])
    }

    /// Stops the sources, lets consumers drain what was published, and joins every thread.
    public func shutdown() {
        trades?.stop()
        stop.raise()
        ring.close()
        while running.load(ordering: .acquiring) > 0 { usleep(1_000) }
        publisher = nil
        metricsServer = nil
        if lockFD >= 0 { close(lockFD); lockFD = -1 }
        logger.info("tickwire stopped")
    }

    /// Blocks the calling thread until SIGINT or SIGTERM, then shuts down cleanly.
    /// Call `Daemon.blockTerminationSignals()` before `start()` so no other thread takes them.
    public func runUntilSignalled() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        var signal: Int32 = 0
        sigwait(&set, &signal)
        logger.info("signal \(signal == SIGINT ? "SIGINT" : "SIGTERM") received; shutting down")
        shutdown()
    }

    /// Blocks SIGINT and SIGTERM in this thread and every thread it later creates, so `runUntilSignalled`
    /// receives them with sigwait.
    public static func blockTerminationSignals() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// A snapshot of every counter, for `tickwire stats` and metrics.
    public func statistics() -> DaemonStatistics {
        var s = DaemonStatistics()
        s.uptimeSeconds = Double(Nanos.now().rawValue - startedAt.rawValue) / 1e9
        s.ringCapacity = ring.capacity
        s.published = ring.publishedSequence
        s.subjects = subjects.count
        s.sources = sources.map { src in (src.name, src.counters()) }
        s.histograms = [("tickwire_publish_latency_seconds", "Known time to hand-off to ZeroMQ, per published message.", "", publishLatency)]
        s.consumers = consumers.map { ($0.name, $0.counters) }
        do {
            let hubCounters = consumers.first { $0.name == "in-process-hub" }?.counters ?? ConsumerCounters()
            for sub in hub.subscriptions {
                var c = hubCounters
                c.delivered = sub.delivered
                c.dropped = sub.gaps == 0 ? 0 : hubCounters.dropped
                s.consumers.append(("in-process:\(sub.name)", c))
            }
        }
        return s
    }

    // MARK: - Wiring

    private func runPublisher() {
        let publisher = self.publisher!
        while true {
            let n = publisherConsumer.poll(maxBatch: 256, timeoutNanos: 100_000_000) { event in
                publisher.send(event)
            }
            if n < 0 { break }
        }
    }

    private func spawn(_ name: String, _ body: @escaping @Sendable () -> Void) {
        running.add(1, ordering: .relaxed)
        let t = Thread { [self] in
            body()
            running.subtract(1, ordering: .releasing)
        }
        t.name = name
        threads.append(t)
        t.start()
    }

    private func makeSources() throws(DaemonError) -> [EventSource] {
        let specs = config.sources.isEmpty ? ["sim"] : config.sources
        var options = FeedOptions()
        do {
            if let d = config.feedDate { options.date = try TradingDate(parsing: d) }
            if let r = config.feedRetransmit { options.retransmitEndpoint = try UDPEndpoint(parsing: r) }
        } catch {
            throw .config(ConfigError(key: "feeds", reason: error.description))
        }
        options.errorPolicy = config.feedOnError == "skip" ? .skip : .stop
        options.gapTimeoutNanos = Int64(config.feedGapTimeoutMs) * 1_000_000
        var out = [EventSource]()
        for spec in specs {
            if spec.hasPrefix("zmq:") {
                out.append(try relaySource(spec))
                continue
            }
            let parsed: SourceSpec
            do { parsed = try SourceSpec(parsing: spec) } catch {
                throw .source(spec, error.description + ", or zmq:ENDPOINT[#PATTERN]")
            }
            do {
                if let source = try SourceFactory.make(parsed, options: options) {
                    out.append(source)
                } else {
                    out.append(MarketSimulator(options: simulatorOptions()))
                }
            } catch {
                throw .source(spec, "\(error)")
            }
        }
        return out
    }

    private func simulatorOptions() -> MarketSimulator.Options {
        var o = MarketSimulator.Options()
        o.rate = config.simRate
        let symbols = config.resolvedSimSymbols
        if !symbols.isEmpty { o.symbols = symbols }
        o.venues = config.simVenues
        o.seed = config.simSeed
        o.burstEverySeconds = config.simBurstEverySeconds
        o.limit = config.simLimit
        return o
    }

    private func relaySource(_ spec: String) throws(DaemonError) -> EventSource {
        let rest = spec.dropFirst(4).split(separator: "#", maxSplits: 1).map(String.init)
        var pattern: SubjectPattern? = nil
        if rest.count == 2 {
            do { pattern = try SubjectPattern(rest[1]) } catch { throw .source(spec, error.description) }
        }
        guard let endpoint = rest.first, (try? DaemonConfig.endpoint(endpoint, key: "source")) != nil else {
            throw .source(spec, "expected zmq:ENDPOINT[#PATTERN], such as zmq:tcp://10.0.0.5:5556#MD.>")
        }
        return ZMQRelaySource(endpoint: endpoint, pattern: pattern, context: context)
    }

    private func openDataDirectory() throws(DaemonError) {
        let dir = config.dataDirectory
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            throw .dataDirectory(dir, "cannot create it: \(error.localizedDescription)")
        }
        // One daemon per data directory: a second would interleave the journal and the store.
        let path = dir + "/LOCK"
        let fd = tw_open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .dataDirectory(dir, "cannot open \(path): \(String(cString: strerror(errno)))") }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            close(fd)
            throw .dataDirectory(dir, "another tickwire daemon holds \(path); stop it, or give this one another --data")
        }
        lockFD = fd
    }
}

/// A source's way into the ring.
final class RingSink: EventSink {
    let ring: BroadcastRing
    let subjects: SubjectTable
    let source: UInt16
    init(ring: BroadcastRing, subjects: SubjectTable, source: UInt16) {
        self.ring = ring; self.subjects = subjects; self.source = source
    }
    func emit(_ event: Event) {
        var e = event
        e.source = source
        ring.publish(e)
    }
}

/// Counters of a running daemon at one moment.
public struct DaemonStatistics: Sendable {
    public var histograms: [(name: String, help: String, labels: String, histogram: LatencyHistogram)] = []
    public var uptimeSeconds = 0.0
    public var ringCapacity = 0
    public var published: UInt64 = 0
    public var subjects = 0
    public var sources: [(name: String, counters: [(name: String, value: UInt64)])] = []
    public var consumers: [(name: String, counters: ConsumerCounters)] = []
}

/// Hands a value to exactly one other thread that becomes its only user.
struct Unchecked<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
