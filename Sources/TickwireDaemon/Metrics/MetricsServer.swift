import CTickwireSys
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOPosix
import Prometheus
import Synchronization
import TickwireCore
import TickwireRing

/// Why the metrics endpoint could not be opened.
public struct MetricsServerError: Error, CustomStringConvertible {
    public let endpoint: String
    public let reason: String
    public var description: String { "\(endpoint): \(reason)" }
}

/// The HTTP endpoint for Prometheus scrapes and `tickwire stats`, served by Hummingbird (SwiftNIO underneath).
///
/// Connections are served concurrently on an event loop thread of the server's own, so an idle or slow client
/// never holds up a scrape (issue 13: the hand-written server before this one served one connection at a time).
/// Every connection is bounded: a request head must arrive whole within `idleTimeout` of the connection opening
/// or of the previous response (a client dribbling its headers is cut then), a head larger than
/// `maxHeadBytes` is answered 400 and the connection closed, a request carrying a body is answered and its
/// connection closed (bodies are never read), and at most `maxConnections` are open at once (the rest wait in
/// the listen backlog). GET only; the handler's body is answered 200, nil 404.
///
/// The server is running when `init` returns (the port is bound, so a busy endpoint throws from `init`) and
/// runs until `stop`, which closes idle connections at once, lets in-flight responses finish (bounded), and
/// joins the event loop thread.
///
/// With a `monitor`, the same server also serves the live monitor page at `/` and its WebSocket at `/ws`
/// (`MonitorPages` bounds the pages); the head-arrival bound above then also covers a WebSocket upgrade request.
final class MetricsServer: Sendable {
    struct Limits: Sendable {
        /// A connection with no request in progress is closed after this long; this is also the time a client has
        /// to send a request head whole.
        var idleTimeout: Duration = .seconds(5)
        /// The request line and every header field together.
        var maxHeadBytes = 16 * 1024
        var maxHeaderFields = 100
        var maxConnections = 64
        var backlog = 256
        /// How long `stop` waits for answers in flight before it closes their connections.
        var shutdownGrace: Duration = .seconds(2)
    }

    let endpoint: String
    /// The port actually bound (useful when 0 was asked for).
    let port: UInt16
    let limits: Limits
    private let group: MultiThreadedEventLoopGroup
    private let lifecycle: Lifecycle
    private let logger: Logger
    private let executor: ThreadTaskExecutor
    private let monitor: MonitorPages?

    /// - Parameters:
    ///   - endpoint: `HOST:PORT` (an IPv4 address; `localhost` means 127.0.0.1; port 0 for any free port).
    ///   - monitor: the monitor's pages, to serve `/` and `/ws` too (nil: 404 there). Its owner starts it once the
    ///     statistics it reads are complete; `stop` stops it and closes its pages.
    ///   - handler: the body for a path (without its query), or nil for 404. Called on the server's own thread.
    init(endpoint: String, limits: Limits = Limits(), monitor: MonitorPages? = nil, logger: Logger? = nil,
         handler: @escaping @Sendable (String) -> String?) throws(MetricsServerError) {
        self.endpoint = endpoint
        self.limits = limits
        func fail(_ r: String) -> MetricsServerError { MetricsServerError(endpoint: endpoint, reason: r) }
        let parts = endpoint.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let port = UInt16(parts[1]) else { throw fail("expected HOST:PORT such as 127.0.0.1:9464") }
        let host = parts[0] == "localhost" ? "127.0.0.1" : String(parts[0])
        var probe = in_addr()
        guard inet_pton(AF_INET, host, &probe) == 1 else { throw fail("'\(host)' is not an IPv4 address") }

        var log = logger ?? Logger(label: "tickwire.metrics")
        if logger == nil { log.logLevel = .warning }
        let lifecycle = Lifecycle()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let http1 = HTTP1Channel.Configuration(
            idleTimeout: TimeAmount(limits.idleTimeout),
            httpDecoderConfiguration: .init(maxHeaderFieldSize: limits.maxHeadBytes, maxHeaderListSize: limits.maxHeadBytes,
                                            maxHeaderFieldCount: limits.maxHeaderFields))
        let pages = MonitorPages.Limits()
        let ws = WebSocketServerConfiguration(maxFrameSize: monitor?.limits.maxInboundFrameBytes ?? pages.maxInboundFrameBytes,
                                              autoPing: .enabled(timePeriod: .seconds(30)),
                                              closeTimeout: monitor?.limits.closeTimeout ?? pages.closeTimeout)
        let firstHead = TimeAmount(limits.idleTimeout)
        // HTTP/1.1 with an upgrade to a WebSocket on /ws. Hummingbird's idle timeout starts only once a first request
        // head is parsed, so `GuardedChannel` bounds the time to that first head (and tracks every connection, the
        // upgraded ones too, for `stop`).
        let server = HTTPServerBuilder { responder in
            GuardedChannel(base: HTTP1WebSocketUpgradeChannel(
                responder: responder, configuration: .init(http1: http1, ws: ws),
                shouldUpgrade: { (head: HTTPRequest, channel: any Channel, _: Logger) throws -> ShouldUpgradeResult<WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context>> in
                    FirstRequestDeadline.disarm(channel)
                    let path = head.path.map { $0.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0] }
                    guard let monitor, path == "/ws" else { return .dontUpgrade }
                    return monitor.upgrade(channel: channel)
                }),
                lifecycle: lifecycle, firstHeadTimeout: firstHead)
        }
        let app = Application(
            responder: MetricsResponder(handler: handler, page: monitor == nil ? nil : ByteBuffer(string: MonitorPage.html)),
            server: server,
            configuration: ApplicationConfiguration(
                address: .hostname(host, port: Int(port)), backlog: limits.backlog, reuseAddress: true,
                availableConnectionsDelegate: MaximumAvailableConnections(limits.maxConnections, logger: log)),
            onServerRunning: { channel in lifecycle.bound(channel) },
            eventLoopGroupProvider: .shared(group),
            logger: log)
        let executor = ThreadTaskExecutor(name: "tw-metrics")
        // Application.run is Hummingbird's own ServiceGroup (the server and its date cache), without signal handlers:
        // the daemon takes SIGINT and SIGTERM itself and calls `stop`.
        Task.detached(executorPreference: executor) {
            do {
                try await app.run()
                lifecycle.finished(nil)
            } catch {
                lifecycle.finished(error)
            }
        }
        self.group = group
        self.lifecycle = lifecycle
        self.logger = log
        self.executor = executor
        self.monitor = monitor
        switch lifecycle.waitUntilBound(seconds: 10) {
        case .bound(let p):
            self.port = p
        case .failed(let error):
            self.port = 0
            stop()
            if let io = error as? IOError, io.errnoCode == EADDRINUSE {
                throw fail("address already in use (is another 'tickwire run' going?)")
            }
            throw fail("\(error)")
        case .timedOut:
            self.port = 0
            stop()
            throw fail("the HTTP server did not start within 10 s")
        }
    }

    /// Stops accepting, closes idle connections at once, lets responses in flight finish (at most `shutdownGrace`,
    /// then their connections are closed), and ends the server's threads. Blocks until done; safe to call twice.
    ///
    /// This is the quiescing Hummingbird's graceful shutdown does (ChannelShouldQuiesceEvent to every connection),
    /// driven from here rather than through ServiceLifecycle's `triggerGracefulShutdown`: that path hops through an
    /// unstructured task on the shared cooperative pool, which a blocked caller on a two-core machine can starve.
    func stop() {
        guard lifecycle.beginStop() else { return }
        lifecycle.serverChannel?.close(promise: nil)
        // Pages never finish by themselves: close them first rather than wait out the grace for them.
        monitor?.stop()
        for c in lifecycle.connections() { c.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
        let grace = Double(limits.shutdownGrace.components.seconds) + Double(limits.shutdownGrace.components.attoseconds) / 1e18
        if !lifecycle.waitUntilFinished(seconds: grace) {
            for c in lifecycle.connections() { c.close(promise: nil) }
            if !lifecycle.waitUntilFinished(seconds: 5) {
                // Never seen; leave the threads rather than pull the event loop from under work still on it.
                logger.error("metrics server on \(endpoint) did not stop within \(grace + 5) s; its threads are left running")
                return
            }
        }
        try? group.syncShutdownGracefully()
        executor.shutdown()
    }

    deinit { stop() }
}

/// Registers each connection with the lifecycle, so `stop` can reach it; a connection accepted while stopping is
/// closed at once.
private final class ConnectionTracker: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    typealias InboundIn = Never
    private let lifecycle: Lifecycle
    init(_ lifecycle: Lifecycle) { self.lifecycle = lifecycle }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        guard lifecycle.add(channel) else { channel.close(promise: nil); return }
        channel.closeFuture.whenComplete { [lifecycle] _ in lifecycle.remove(channel) }
    }
}

/// Sets up each connection as `base` does, after adding what the metrics server needs on every connection,
/// upgraded or not: its registration with the lifecycle and the bound on the time to its first request head.
private struct GuardedChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value
    let base: Base
    let lifecycle: Lifecycle
    let firstHeadTimeout: TimeAmount

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(ConnectionTracker(lifecycle), position: .first)
            try channel.pipeline.syncOperations.addHandler(FirstRequestDeadline(firstHeadTimeout), position: .last)
        }.flatMap { base.setup(channel: channel, logger: logger) }
    }

    /// Hummingbird's upgrade handling logs a connection that closes before its first request head (one our deadline
    /// cut, a client that went away) as an error; to the daemon's log that is no error, so the level here is raised.
    func handle(value: Value, logger: Logger) async {
        var quiet = logger
        quiet.logLevel = .critical
        await base.handle(value: value, logger: quiet)
    }
}

/// Closes a connection whose first request head has not arrived within the timeout (a client that connects and
/// says nothing, or dribbles its head a byte at a time). Disarmed once a request is being answered or a
/// WebSocket upgrade is decided; from then on Hummingbird's idle timeout, or the WebSocket's pings, take over.
private final class FirstRequestDeadline: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    private let timeout: TimeAmount
    private var deadline: Scheduled<Void>?
    private var disarmed = false

    init(_ timeout: TimeAmount) { self.timeout = timeout }

    func handlerAdded(context: ChannelHandlerContext) { if context.channel.isActive { arm(context) } }

    func channelActive(context: ChannelHandlerContext) {
        arm(context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) { disarm() }

    private func arm(_ context: ChannelHandlerContext) {
        guard deadline == nil, !disarmed else { return }
        let channel = context.channel
        deadline = context.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) }
    }

    private func disarm() {
        disarmed = true
        deadline?.cancel()
        deadline = nil
    }

    /// Disarms the channel's deadline; callable from any thread.
    static func disarm(_ channel: any Channel) {
        if channel.eventLoop.inEventLoop {
            (try? channel.pipeline.syncOperations.handler(type: FirstRequestDeadline.self))?.disarm()
        } else {
            channel.eventLoop.execute { (try? channel.pipeline.syncOperations.handler(type: FirstRequestDeadline.self))?.disarm() }
        }
    }
}

/// Hummingbird's basic context plus the connection, so the responder can ask for it to be closed.
private struct MetricsRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel
    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// GET /anything: the handler's text, or 404; GET / the monitor page when there is one; any other method 405.
private struct MetricsResponder: HTTPResponder {
    typealias Context = MetricsRequestContext
    let handler: @Sendable (String) -> String?
    /// The monitor page's HTML, when the monitor is on.
    let page: ByteBuffer?

    func respond(to request: Request, context: MetricsRequestContext) async throws -> Response {
        FirstRequestDeadline.disarm(context.channel)
        // Nothing here reads a request body, and the server would otherwise drain one for as long as it keeps
        // coming: a request that declares one is answered, then its connection closed (the connection handler
        // closes after the answer in flight when asked to quiesce).
        if request.headers[.transferEncoding] != nil || (request.headers[.contentLength].flatMap { Int($0) } ?? 0) > 0 {
            context.channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
        guard request.method == .get else {
            return Self.text(.methodNotAllowed, "GET only\n", extra: [.allow: "GET"])
        }
        if let page, request.uri.path == "/" || request.uri.path == "/index.html" {
            return Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .contentLength: String(page.readableBytes),
                                                   .cacheControl: "no-store"],
                            body: ResponseBody(byteBuffer: page))
        }
        guard let body = handler(request.uri.path) else { return Self.text(.notFound, "not found\n") }
        return Self.text(.ok, body, contentType: "text/plain; version=0.0.4; charset=utf-8")
    }

    private static func text(_ status: HTTPResponse.Status, _ body: String, contentType: String = "text/plain; charset=utf-8",
                             extra: HTTPFields = [:]) -> Response {
        var headers = extra
        headers[.contentType] = contentType
        headers[.contentLength] = String(body.utf8.count)
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }
}

/// Runs the server's tasks (and the actors they call into) on a thread of its own instead of Swift's shared
/// cooperative pool. That pool has one thread per core (two here); a caller blocked on one of them, such as a
/// synchronous test waiting for an answer or `Daemon.start` waiting for the bind, must never be what the
/// server needs in order to answer.
private final class ThreadTaskExecutor: TaskExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var stopping = false
    private var exited = false
    private let done = DispatchSemaphore(value: 0)

    init(name: String) {
        let thread = Thread { [self] in run() }
        thread.name = name
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        if exited {
            condition.unlock()
            // A straggler after shutdown (nothing of ours should be left by then): run it on the shared pool.
            globalConcurrentExecutor.enqueue(ExecutorJob(job))
            return
        }
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func run() {
        _ = tw_set_thread_name("tw-metrics")
        var batch: [UnownedJob] = []
        while true {
            condition.lock()
            while jobs.isEmpty && !stopping { condition.wait() }
            if jobs.isEmpty {
                exited = true
                condition.unlock()
                done.signal()
                return
            }
            swap(&batch, &jobs)
            condition.unlock()
            for job in batch { job.runSynchronously(on: asUnownedTaskExecutor()) }
            batch.removeAll(keepingCapacity: true)
        }
    }

    /// Runs what is queued, then ends the thread and waits for it.
    func shutdown() {
        condition.lock()
        let first = !stopping
        stopping = true
        condition.signal()
        condition.unlock()
        if first { done.wait() }
    }
}

/// The server's start and end, handed from its task to the threads that wait for them.
private final class Lifecycle: Sendable {
    enum Start { case bound(UInt16), failed(any Error), timedOut }
    private struct State {
        var server: (any Channel)?
        var connections: [ObjectIdentifier: any Channel] = [:]
        var error: (any Error)?
        var finished = false
        var stopping = false
    }
    private let state = Locked(State())   // a pthread mutex: ThreadSanitizer sees it (Synchronization.Mutex it does not)
    private let started = DispatchSemaphore(value: 0)
    private let ended = DispatchSemaphore(value: 0)

    func bound(_ channel: any Channel) {
        state.withLock { $0.server = channel }
        started.signal()
    }

    var serverChannel: (any Channel)? { state.withLock { $0.server } }

    /// False once stopping.
    func add(_ channel: any Channel) -> Bool {
        state.withLock { s in
            if s.stopping { return false }
            s.connections[ObjectIdentifier(channel)] = channel
            return true
        }
    }

    func remove(_ channel: any Channel) { state.withLock { _ = $0.connections.removeValue(forKey: ObjectIdentifier(channel)) } }

    func connections() -> [any Channel] { state.withLock { Array($0.connections.values) } }

    func finished(_ error: (any Error)?) {
        state.withLock { $0.error = error; $0.finished = true }
        started.signal()
        ended.signal()
    }

    func waitUntilBound(seconds: Double) -> Start {
        guard started.wait(timeout: .now() + seconds) == .success else { return .timedOut }
        return state.withLock { s in
            if let p = s.server?.localAddress?.port, let port = UInt16(exactly: p), port != 0, !s.finished { return .bound(port) }
            return .failed(s.error ?? MetricsServerError(endpoint: "", reason: "the HTTP server stopped as it started"))
        }
    }

    /// True for the first caller only.
    func beginStop() -> Bool {
        state.withLock { s in
            defer { s.stopping = true }
            return !s.stopping
        }
    }

    func waitUntilFinished(seconds: Double) -> Bool {
        if state.withLock({ $0.finished }) { return true }
        guard ended.wait(timeout: .now() + seconds) == .success else { return false }
        ended.signal()
        return true
    }
}

/// The daemon's metrics in a swift-prometheus registry, exposed as the Prometheus text format.
///
/// The hot paths count in their own atomics (a registry counter per event would cost a lock); at each scrape
/// the snapshot is copied into the registry's counters and gauges, which also hold whatever other code reports
/// through swift-metrics once `tickwire run` bootstraps `MetricsSystem` with this registry. The latency
/// histograms are lock-free power-of-two histograms of our own, appended in the same text format.
public final class MetricsExport: @unchecked Sendable {
    public let registry: PrometheusCollectorRegistry
    private var counters: [String: Counter] = [:]
    private var gauges: [String: Gauge] = [:]
    /// Held while a render copies a snapshot in and reads the exposition out (two scrapes at once).
    private let rendering = Locked(())

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) { self.registry = registry }

    private func counter(_ name: String, _ labels: [(String, String)], _ value: UInt64, _ help: String) {
        let key = name + labels.map { "|\($0.0)=\($0.1)" }.joined()
        let c = counters[key] ?? registry.makeCounter(name: name, labels: labels, help: help)
        counters[key] = c
        c.reset()
        c.increment(by: Int64(clamping: value))
    }

    private func gauge(_ name: String, _ labels: [(String, String)], _ value: Double, _ help: String) {
        let key = name + labels.map { "|\($0.0)=\($0.1)" }.joined()
        let g = gauges[key] ?? registry.makeGauge(name: name, labels: labels, help: help)
        gauges[key] = g
        g.set(to: value)
    }

    /// Copies a snapshot into the registry and returns the whole exposition.
    public func render(_ s: DaemonStatistics) -> String {
        rendering.withLock { _ in renderLocked(s) }
    }

    private func renderLocked(_ s: DaemonStatistics) -> String {
        gauge("tickwire_uptime_seconds", [], s.uptimeSeconds, "Seconds since the daemon started.")
        counter("tickwire_ring_published_total", [], s.published, "Events published into the broadcast ring.")
        gauge("tickwire_ring_capacity", [], Double(s.ringCapacity), "Slots in the broadcast ring.")
        gauge("tickwire_ring_occupancy_ratio", [], s.ringOccupancy, "Fraction of the ring the slowest blocking consumer has yet to read.")
        gauge("tickwire_subjects", [], Double(s.subjects), "Distinct subjects seen.")
        for (name, values) in s.sources {
            for (c, value) in values {
                counter("tickwire_source_total", [("source", name), ("counter", c)], value, "Per-source counters (events, errors, gaps...).")
            }
        }
        for (name, c) in s.consumers {
            let l = [("subscription", name)]
            counter("tickwire_subscription_delivered_total", l, c.delivered, "Events handed to the subscription.")
            counter("tickwire_subscription_dropped_total", l, c.dropped, "Events the subscription lost by being lapped.")
            gauge("tickwire_subscription_lag", l, Double(c.lag), "Events published but not yet consumed.")
            counter("tickwire_subscription_resyncs_total", l, c.resyncs, "Resynchronisations from the last-value cache.")
            counter("tickwire_subscription_stalls_total", l, c.stalls, "Times the producer waited for this blocking subscription.")
        }
        for c in s.counters { counter(c.name, c.labels.0.isEmpty ? [] : [c.labels], c.value, c.help) }
        for g in s.gauges { gauge(g.name, [], g.value, g.help) }
        var out = registry.emitToString()
        for h in s.histograms { out += h.histogram.prometheus(name: h.name, help: h.help, labels: h.labels) }
        return out
    }
}
