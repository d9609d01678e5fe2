import CTickwireSys
import Foundation
import Histogram
import Logging
import Synchronization
import TickwireCore
import TickwireDaemon
import TickwireNATS
import TickwireZMQ

/// The daemon's NATS output against a raw libnats publisher of the same 72-byte payloads to the same kind of
/// subscriber, through one local `nats-server` started for the run, in the same run (`tickwire-bench nats`).
///
/// Throughput: the daemon's simulator as fast as the daemon goes (`rate 0`, `limit` N) → ring → ZeroMQ
/// publisher → NATS thread → nats-server → a libnats subscriber, measured at the subscriber from the first to the
/// last message; the baseline is one thread publishing N payloads with libnats → the same server → the same
/// subscriber. Both publishers send each message at once (`sendAsap`, the latency setting the daemon uses).
/// Latency: both paths paced at `latency_rate`, known time (wall clock) to receipt at the subscriber; the
/// daemon's ZeroMQ subscriber is measured in the same run beside its NATS subscriber.
enum NATSBench {
    static func run(_ options: BenchOptions) throws -> Result {
        let n = options.events == 10_000_000 ? 300_000 : options.events
        let latencyRate = Int(options.parameters["latency_rate"] ?? "") ?? 20_000
        let latencySeconds = Double(options.parameters["latency_seconds"] ?? "") ?? 3
        // `send_asap=false`: both publishers let libnats batch writes (throughput) instead of one write a message.
        sendAsap = options.parameters["send_asap"] != "false"
        let server = try LocalNATSServer()
        defer { server.stop() }
        var raw: [Double] = [], daemon: [Double] = [], daemonLost: [Double] = [], queueFull: [Double] = []
        for _ in 0..<options.runs {
            raw.append(try rawThroughput(n, url: server.url))
            let d = try daemonThroughput(n, url: server.url)
            daemon.append(d.rate)
            daemonLost.append(Double(d.lost))
            queueFull.append(Double(d.queueFull))
        }
        let rawLatency = try rawLatencyRun(rate: latencyRate, seconds: latencySeconds, url: server.url)
        let (daemonNATS, daemonZMQ) = try daemonLatencyRun(rate: latencyRate, seconds: latencySeconds, url: server.url)
        let fanout = options.parameters["fanout"] == "false" ? nil : try NATSFanoutBench.run(
            options, runs: options.runs, messages: Int(options.parameters["fanout_messages"] ?? "") ?? 50_000,
            latencyRate: Int(options.parameters["fanout_rate"] ?? "") ?? 2_000, latencySeconds: latencySeconds)
        return Result(
            messagesPerRun: n, runs: options.runs,
            rawLibnatsMsgsPerS: .init(best: raw.max()!, median: EBench.median(raw)),
            daemonNatsMsgsPerS: .init(best: daemon.max()!, median: EBench.median(daemon)),
            daemonOverRawMedian: medianRatio(daemon, raw), daemonOverRawBest: ratio(daemon.max()!, raw.max()!),
            daemonNatsLostPerRun: daemonLost, daemonNatsQueueFullPerRun: queueFull, latencyRateMsgsPerS: latencyRate,
            rawLibnatsLatencyNs: .init(rawLatency), daemonNatsLatencyNs: .init(daemonNATS), daemonZmqLatencyNs: .init(daemonZMQ),
            libnats: NATS.version, sendAsap: sendAsap, fanout: fanout)
    }

    struct Result: BenchReport {
        var suite = "nats"
        var messagesPerRun: Int, runs: Int
        var rawLibnatsMsgsPerS: E2EBench.Result.BestMedian, daemonNatsMsgsPerS: E2EBench.Result.BestMedian
        var daemonOverRawMedian: Double, daemonOverRawBest: Double
        var daemonNatsLostPerRun: [Double]
        /// Of those, dropped by the daemon itself: the simulator outran its NATS thread by the handoff's 65,536
        /// slots (reported to NATS subscribers as GAPs).
        var daemonNatsQueueFullPerRun: [Double]
        var latencyRateMsgsPerS: Int
        var rawLibnatsLatencyNs: E2EBench.Percentiles, daemonNatsLatencyNs: E2EBench.Percentiles, daemonZmqLatencyNs: E2EBench.Percentiles
        var libnats: String
        var sendAsap: Bool
        /// 2,000 subscriptions over three servers (nil with `fanout=false`).
        var fanout: NATSFanoutBench.Result?
    }

    typealias EBench = E2EBench
    nonisolated(unsafe) static var sendAsap = true

    /// Counts messages on `>` and records wall-clock latency from the payload's known time.
    final class Counter: @unchecked Sendable {
        let received = Atomic<Int>(0)
        var first: Int64 = 0, last: Int64 = 0
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        let recordLatency: Bool
        init(recordLatency: Bool) { self.recordLatency = recordLatency }

        func take(_ payload: UnsafeRawBufferPointer) {
            let now = tw_monotonic_ns()
            if first == 0 { first = now }
            last = now
            if recordLatency, payload.count >= 40 {
                let known = Int64(littleEndian: payload.loadUnaligned(fromByteOffset: 32, as: Int64.self))
                histogram.record(UInt64(max(0, Nanos.now().rawValue - known)))
            }
            received.add(1, ordering: .releasing)
        }
    }

    static func subscriber(_ url: String, pattern: String, latency: Bool) throws -> (NATSConnection, NATSSubscription, Counter) {
        var o = NATSConnection.Options(servers: [url])
        o.maxPendingMessages = 10_000_000
        let conn = try NATSConnection(o)
        let counter = Counter(recordLatency: latency)
        let sub = try conn.subscribe(pattern, pendingLimit: 10_000_000) { m in m.withBytes { counter.take($0) } }
        try conn.flush()
        return (conn, sub, counter)
    }

    static func waitFor(_ counter: Counter, _ n: Int, quietSeconds: Double = 3) {
        var last = -1, since = tw_monotonic_ns()
        while true {
            let got = counter.received.load(ordering: .acquiring)
            if got >= n { return }
            if got != last { last = got; since = tw_monotonic_ns() }
            if Double(tw_monotonic_ns() - since) / 1e9 > quietSeconds { return }
            usleep(2_000)
        }
    }

    static func rawThroughput(_ n: Int, url: String) throws -> Double {
        let (subConn, sub, counter) = try subscriber(url, pattern: "MD.>", latency: false)
        var o = NATSConnection.Options(servers: [url])
        o.sendAsap = sendAsap
        let pub = try NATSConnection(o)
        let subjects = EBench.subjects.map { strdup($0)! }
        defer { subjects.forEach { free($0) } }
        let payload = EBench.message(1, stamp: 1)
        payload.withUnsafeBytes { p in
            for i in 0..<n { _ = pub.tryPublish(subject: subjects[i % subjects.count], bytes: p) }
        }
        try? pub.flush()
        waitFor(counter, n)
        let got = counter.received.load(ordering: .acquiring)
        withExtendedLifetime((subConn, sub, pub)) {}
        return Double(got) / (Double(max(1, counter.last - counter.first)) / 1e9)
    }

    static func daemon(url: String, rate: Int, limit: Int?, _ adjust: (inout DaemonConfig) -> Void = { _ in }) throws -> (Daemon, String) {
        let port = EBench.freeTCPPort()
        var c = DaemonConfig()
        c.sources = ["sim"]
        c.simRate = rate
        c.simLimit = limit
        c.simBurstEverySeconds = 0
        c.publishEndpoint = "tcp://127.0.0.1:\(port)"
        c.publishHighWaterMark = 0
        c.publishMemoryBudgetMB = 0
        c.metricsEndpoint = "127.0.0.1:0"
        c.tradeEndpoint = "tcp://127.0.0.1:*"
        c.natsServers = [url]
        c.natsRequired = true
        c.natsSendAsap = sendAsap
        c.dataDirectory = NSTemporaryDirectory() + "tickwire-natsbench-\(getpid())-\(port)"
        adjust(&c)
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        let d = Daemon(config: c, logger: logger)
        return (d, c.dataDirectory)
    }

    static func daemonThroughput(_ n: Int, url: String) throws -> (rate: Double, lost: Int, queueFull: UInt64) {
        let (subConn, sub, counter) = try subscriber(url, pattern: "MD.>", latency: false)
        let (d, dir) = try daemon(url: url, rate: 0, limit: n)
        try d.start()
        // The simulator also publishes one STATUS per book before its first event: expect at least n.
        waitFor(counter, n)
        let queueFull = d.statistics().counters.first { $0.name == "tickwire_nats_failed_total" && $0.labels.1 == "queue_full" }?.value ?? 0
        d.shutdown()
        try? FileManager.default.removeItem(atPath: dir)
        let got = counter.received.load(ordering: .acquiring)
        withExtendedLifetime((subConn, sub)) {}
        return (Double(got) / (Double(max(1, counter.last - counter.first)) / 1e9), max(0, n - got), queueFull)
    }

    static func rawLatencyRun(rate: Int, seconds: Double, url: String) throws -> Histogram<UInt64> {
        let (subConn, sub, counter) = try subscriber(url, pattern: "MD.>", latency: true)
        var o = NATSConnection.Options(servers: [url])
        o.sendAsap = sendAsap
        let pub = try NATSConnection(o)
        let subject = strdup(EBench.subjects[0])!
        defer { free(subject) }
        let count = Int(Double(rate) * seconds)
        let interval = 1_000_000_000 / Int64(rate)
        let t0 = tw_monotonic_ns()
        for i in 0..<count {
            let due = t0 + Int64(i) * interval
            while tw_monotonic_ns() < due { tw_cpu_relax() }
            let now = Nanos.now().rawValue
            EBench.message(i, stamp: now).withUnsafeBytes { _ = pub.tryPublish(subject: subject, bytes: $0) }
        }
        waitFor(counter, count)
        withExtendedLifetime((subConn, sub, pub)) {}
        return counter.histogram
    }

    /// The daemon's simulator paced at `rate`: latency at a NATS subscriber and at a ZeroMQ subscriber, together.
    static func daemonLatencyRun(rate: Int, seconds: Double, url: String) throws -> (Histogram<UInt64>, Histogram<UInt64>) {
        let (subConn, sub, counter) = try subscriber(url, pattern: "MD.>", latency: true)
        let (d, dir) = try daemon(url: url, rate: rate, limit: nil)
        try d.start()
        let ctx = ZMQContext()
        let zsub = try ctx.socket(.sub)
        try zsub.setReceiveHighWaterMark(0)
        try zsub.subscribe("MD.")
        try zsub.connect(d.config.publishEndpoint)
        try zsub.setReceiveTimeout(milliseconds: 200)
        var zmq = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        usleep(300_000)
        while try zsub.receiveMultipart(dontWait: true) != nil {}
        // Both subscribers from the same moment on.
        counter.histogram.reset()
        let end = tw_monotonic_ns() + Int64(seconds * 1e9)
        while tw_monotonic_ns() < end {
            guard let frames = try zsub.receiveMultipart(), frames.count == 2, let (e, _) = try? WireCodec.decode(frames[1]) else { continue }
            zmq.record(UInt64(max(0, Nanos.now().rawValue - e.knownTime.rawValue)))
        }
        d.shutdown()
        try? FileManager.default.removeItem(atPath: dir)
        withExtendedLifetime((subConn, sub)) {}
        return (counter.histogram, zmq)
    }
}

/// A `nats-server` on a free loopback port for the length of a bench run, stopped by its own process id.
final class LocalNATSServer {
    let process = Process()
    let url: String

    init() throws {
        guard let exe = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]
            .first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw BenchError.failed("nats-server is not installed (Tools/setup.sh installs it)")
        }
        let port = E2EBench.freeTCPPort()
        url = "nats://127.0.0.1:\(port)"
        process.executableURL = URL(fileURLWithPath: exe)
        process.arguments = ["-a", "127.0.0.1", "-p", "\(port)"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(10)
        var o = NATSConnection.Options(servers: [url])
        o.connectTimeoutMs = 200
        o.maxReconnect = 0
        while Date() < deadline {
            if let c = try? NATSConnection(o) { c.close(); return }
            usleep(50_000)
        }
        stop()
        throw BenchError.failed("nats-server on \(url) did not answer within 10 s")
    }

    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
    }
}
