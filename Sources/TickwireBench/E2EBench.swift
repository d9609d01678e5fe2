import CTickwireSys
import Foundation
import Histogram
import Logging
import Synchronization
import TickwireCore
import TickwireDaemon
import TickwireZMQ

/// The daemon end to end — ZeroMQ in → ring → ZeroMQ out — against a raw libzmq forwarder (`zmq_proxy`,
/// XSUB→XPUB) moving the same messages over the same loopback TCP, in the same run; and against the floor of a
/// forwarder that re-sequences: one libzmq thread (SUB→PUB) that decodes each event, gives it its own sequence
/// and encodes it again, the least work the daemon's relay must do to each message on top of `zmq_proxy`'s.
///
/// Throughput: a publisher floods N wire messages; a subscriber counts them at the far end; high-water marks are
/// off on every socket so nothing is dropped and the figure is the path's own speed. Latency: the same path
/// paced at `latency_rate` messages/s, each stamped with its send time (monotonic) in `event_time`.
enum E2EBench {
    static func run(_ options: BenchOptions) throws -> any BenchReport {
        let n = options.events == 10_000_000 ? 1_000_000 : options.events
        let latencyRate = Int(options.parameters["latency_rate"] ?? "") ?? 20_000
        let latencyCount = Int(options.parameters["latency_count"] ?? "") ?? 40_000
        var proxyRuns: [Double] = [], daemonRuns: [Double] = [], bareRuns: [Double] = [], relayRuns: [Double] = []
        var proxyCPU: [Double] = [], daemonCPU: [Double] = [], relayCPU: [Double] = []
        var accounts: [String: [[String: Double]]] = [:]
        var proxyLatency = Histogram<UInt64>(highestTrackableValue: 10_000_000_000, numberOfSignificantValueDigits: .three)
        var daemonLatency = proxyLatency
        // `only=daemon` (or `proxy`, `relay`) runs one path alone, e.g. under perf; the ratios then mean nothing.
        // `only=latency`: the paced latency of both paths alone, taking turns round by round.
        let only = options.parameters["only"]
        if only == "latency" { return try latencyRounds(latencyCount, rate: latencyRate, runs: options.runs) }
        for _ in 0..<options.runs {
            if only == nil || only == "proxy" {
                let r = try throughput(n, via: .proxy)
                proxyRuns.append(r.rate); proxyCPU.append(r.cpuNanos); accounts["zmq_proxy", default: []].append(r.byThread)
            }
            if only == nil || only == "daemon" {
                let r = try throughput(n, via: .daemon)
                daemonRuns.append(r.rate); daemonCPU.append(r.cpuNanos); accounts["daemon", default: []].append(r.byThread)
            }
            if only == nil || only == "relay" {
                let r = try throughput(n, via: .relay)
                relayRuns.append(r.rate); relayCPU.append(r.cpuNanos); accounts["relay", default: []].append(r.byThread)
            }
            if only == nil { bareRuns.append(try throughput(n, via: .daemonWithoutAlerts).rate) }
        }
        if only != nil {
            return OnePath(only: only!, zmqProxyMsgsPerS: proxyRuns, daemonMsgsPerS: daemonRuns, relayMsgsPerS: relayRuns,
                           zmqProxyCpuNsPerMsg: proxyCPU, daemonCpuNsPerMsg: daemonCPU, relayCpuNsPerMsg: relayCPU,
                           cpuByThread: ThreadShare.medians(accounts))
        }
        try latency(latencyCount, rate: latencyRate, via: .proxy, into: &proxyLatency)
        try latency(latencyCount, rate: latencyRate, via: .daemon, into: &daemonLatency)
        let pBest = proxyRuns.max()!, dBest = daemonRuns.max()!
        return Result(
            messagesPerRun: n, runs: options.runs,
            zmqProxyMsgsPerS: .init(best: pBest, median: median(proxyRuns)),
            daemonMsgsPerS: .init(best: dBest, median: median(daemonRuns)),
            daemonOverProxyBest: dBest / pBest, daemonOverProxyMedian: median(daemonRuns) / median(proxyRuns),
            proxyOverDaemonCpuPerMsgMedian: median(proxyCPU) / median(daemonCPU),
            zmqProxyCpuNsPerMsg: median(proxyCPU), daemonCpuNsPerMsg: median(daemonCPU),
            cpuByThread: ThreadShare.medians(accounts),
            relayMsgsPerS: .init(best: relayRuns.max()!, median: median(relayRuns)), relayCpuNsPerMsg: median(relayCPU),
            relayOverProxyByRound: zip(relayRuns, proxyRuns).map { $0 / $1 },
            daemonOverRelayByRound: zip(daemonRuns, relayRuns).map { $0 / $1 },
            daemonWithoutAlertRulesMsgsPerS: .init(best: bareRuns.max()!, median: median(bareRuns)),
            alertRulesOnOverOffMedian: median(daemonRuns) / median(bareRuns),
            latencyRateMsgsPerS: latencyRate,
            zmqProxyLatencyNs: Percentiles(proxyLatency), daemonLatencyNs: Percentiles(daemonLatency))
    }

    struct Result: BenchReport {
        var suite = "e2e"
        var messagesPerRun: Int, runs: Int
        struct BestMedian: Codable, Sendable { var best: Double, median: Double }
        var zmqProxyMsgsPerS: BestMedian, daemonMsgsPerS: BestMedian
        var daemonOverProxyBest: Double, daemonOverProxyMedian: Double, proxyOverDaemonCpuPerMsgMedian: Double
        /// CPU of the whole process (publisher, subscriber, forwarder, every thread) per message delivered: on two
        /// saturated cores throughput is about 2 s / this, and it is far steadier than wall-clock rates.
        var zmqProxyCpuNsPerMsg: Double, daemonCpuNsPerMsg: Double
        /// Where that CPU goes, thread by thread (`ThreadShare`).
        var cpuByThread: [ThreadShare]
        /// The re-sequencing floor (a decode-and-encode relay on one libzmq thread), and the daemon against it.
        var relayMsgsPerS: BestMedian, relayCpuNsPerMsg: Double
        var relayOverProxyByRound: [Double], daemonOverRelayByRound: [Double]
        var daemonWithoutAlertRulesMsgsPerS: BestMedian
        var alertRulesOnOverOffMedian: Double
        var latencyRateMsgsPerS: Int
        var zmqProxyLatencyNs: Percentiles, daemonLatencyNs: Percentiles
    }

    /// `only=daemon` (or `proxy`): every round's figures of one path (Tools/ab_e2e.sh reads these).
    struct OnePath: BenchReport {
        var suite = "e2e"
        var only: String
        var zmqProxyMsgsPerS: [Double], daemonMsgsPerS: [Double], relayMsgsPerS: [Double]
        var zmqProxyCpuNsPerMsg: [Double], daemonCpuNsPerMsg: [Double], relayCpuNsPerMsg: [Double]
        var cpuByThread: [ThreadShare]
    }

    /// CPU a delivered message on one kind of thread of one path (the median over rounds), from the kernel's time on
    /// CPU of each thread (`/proc/self/task/*/schedstat`) over the same window as the path's CPU figure. The bench's
    /// own threads (`bench sender`, `bench subscriber`) and the libzmq I/O threads (the bench's context and the
    /// forwarder's, which share a name) are in every path; `forwarder` is zmq_proxy's or the relay's one thread, and
    /// the daemon's threads go by their names (`tw-…`, as `top -H` shows them).
    struct ThreadShare: Codable, Sendable {
        var path: String, thread: String, cpuNsPerMsg: Double

        static func medians(_ accounts: [String: [[String: Double]]]) -> [ThreadShare] {
            accounts.keys.sorted().flatMap { path in
                let rounds = accounts[path]!
                return Set(rounds.flatMap(\.keys)).sorted().map { thread in
                    ThreadShare(path: path, thread: thread, cpuNsPerMsg: median(rounds.map { $0[thread] ?? 0 }))
                }
            }
        }
    }

    /// Time on CPU (ns) of each live thread of this process, by thread id, with the name its role is known by.
    static func threadCPU() -> [Int32: (thread: String, nanos: Int64)] {
        var out: [Int32: (thread: String, nanos: Int64)] = [:]
        let me = getpid()
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? [] {
            guard let tid = Int32(entry),
                  let stat = try? String(contentsOfFile: "/proc/self/task/\(entry)/schedstat", encoding: .utf8),
                  let nanos = Int64(stat.split(separator: " ").first ?? ""),
                  let comm = try? String(contentsOfFile: "/proc/self/task/\(entry)/comm", encoding: .utf8) else { continue }
            let name = comm.trimmingCharacters(in: .whitespacesAndNewlines)
            let thread = tid == me ? "bench subscriber"
                : name.hasPrefix("ZMQbg/IO") ? "libzmq I/O threads"
                : name.hasPrefix("tw-") || name.hasPrefix("bench ") || name == "forwarder" ? name
                : "other"
            out[tid] = (thread, nanos)
        }
        return out
    }

    /// Each kind of thread's CPU between two `threadCPU()` readings, a message; threads that ended in between
    /// are not seen (the sender reports its own).
    static func account(_ before: [Int32: (thread: String, nanos: Int64)], _ after: [Int32: (thread: String, nanos: Int64)],
                        messages: Int) -> [String: Double] {
        var out: [String: Double] = [:]
        for (tid, a) in after {
            out[a.thread, default: 0] += Double(a.nanos - (before[tid]?.nanos ?? 0)) / Double(max(messages, 1))
        }
        return out
    }

    /// `only=latency`: every round's p50 and p99 of both paths (ns), their medians and the median ratios, and the
    /// daemon's own share: publish (the bench's send) to the daemon's hand-off to ZeroMQ, p50 as the upper bound of
    /// its power-of-two bucket (`tickwire_publish_latency_seconds`).
    struct LatencyOnly: BenchReport {
        var suite = "e2e"
        var only = "latency"
        var latencyRateMsgsPerS: Int, messagesPerRound: Int
        var zmqProxyP50Ns: [UInt64], daemonP50Ns: [UInt64], zmqProxyP99Ns: [UInt64], daemonP99Ns: [UInt64]
        var daemonHandOffP50AtMostNs: [UInt64]
        var daemonOverProxyP50Median: Double, daemonOverProxyP99Median: Double
    }

    static func latencyRounds(_ n: Int, rate: Int, runs: Int) throws -> LatencyOnly {
        var r = LatencyOnly(latencyRateMsgsPerS: rate, messagesPerRound: n, zmqProxyP50Ns: [], daemonP50Ns: [], zmqProxyP99Ns: [],
                            daemonP99Ns: [], daemonHandOffP50AtMostNs: [], daemonOverProxyP50Median: 0, daemonOverProxyP99Median: 0)
        for _ in 0..<runs {
            var p = Histogram<UInt64>(highestTrackableValue: 10_000_000_000, numberOfSignificantValueDigits: .three), d = p
            try latency(n, rate: rate, via: .proxy, into: &p)
            let handOff = try latency(n, rate: rate, via: .daemon, into: &d)
            r.zmqProxyP50Ns.append(p.valueAtPercentile(50)); r.zmqProxyP99Ns.append(p.valueAtPercentile(99))
            r.daemonP50Ns.append(d.valueAtPercentile(50)); r.daemonP99Ns.append(d.valueAtPercentile(99))
            r.daemonHandOffP50AtMostNs.append(handOff ?? 0)
        }
        r.daemonOverProxyP50Median = median(zip(r.daemonP50Ns, r.zmqProxyP50Ns).map { Double($0) / Double($1) })
        r.daemonOverProxyP99Median = median(zip(r.daemonP99Ns, r.zmqProxyP99Ns).map { Double($0) / Double($1) })
        return r
    }

    struct Percentiles: Codable, Sendable {
        var count: UInt64, p50: UInt64, p99: UInt64, p99_9: UInt64, max: UInt64
        private enum CodingKeys: String, CodingKey { case count, p50, p99, p99_9 = "p99_9", max }
        init(_ h: Histogram<UInt64>) {
            count = h.totalCount; p50 = h.valueAtPercentile(50); p99 = h.valueAtPercentile(99)
            p99_9 = h.valueAtPercentile(99.9); max = h.max
        }
    }

    /// `daemonWithoutAlerts`: the same daemon with no alert rules configured (`alerts = []`): what the rules cost.
    /// `relay`: the re-sequencing floor (see the type's note).
    enum Path { case proxy, relay, daemon, daemonWithoutAlerts }

    /// A running forwarder: `input` is where a publisher connects, `output` where a subscriber connects.
    final class Forwarder {
        let input: String, output: String
        /// The daemon behind a `.daemon` path (nil for the proxy).
        var daemon: Daemon?
        private var stopAction: () -> Void
        init(input: String, output: String, stop: @escaping () -> Void) { self.input = input; self.output = output; self.stopAction = stop }
        func stop() { stopAction() }
    }

    static func startForwarder(_ path: Path) throws -> Forwarder {
        switch path {
        case .proxy:
            let ctx = ZMQContext()
            let (front, back) = try boundEnds(ctx, .xsub, .xpub)
            return forwarding(ctx, front, back) { _ in try ZMQ.proxy(frontend: front, backend: back) }
        case .relay:
            let ctx = ZMQContext()
            let (front, back) = try boundEnds(ctx, .sub, .pub)
            try front.subscribe("")
            return forwarding(ctx, front, back) { stop in try relay(front, back, stop: stop) }
        case .daemon, .daemonWithoutAlerts:
            // The daemon subscribes (connects) to a publisher, so the bench's publisher binds and the daemon's
            // source connects to it.
            let inPort = freeTCPPort(), outPort = freeTCPPort()
            var c = DaemonConfig()
            c.sources = ["zmq:tcp://127.0.0.1:\(inPort)"]
            c.publishEndpoint = "tcp://127.0.0.1:\(outPort)"
            c.publishHighWaterMark = 0
            c.publishMemoryBudgetMB = 0   // lossless: its one subscriber is never cut, however far behind
            c.metricsEndpoint = "127.0.0.1:0"
            c.tradeEndpoint = "tcp://127.0.0.1:*"
            if path == .daemonWithoutAlerts { c.alertEntries = [] }
            c.dataDirectory = NSTemporaryDirectory() + "tickwire-e2e-\(getpid())-\(outPort)"
            var logger = Logger(label: "bench")
            logger.logLevel = .error
            let d = Daemon(config: c, logger: logger)
            try d.start()
            let f = Forwarder(input: "bind:tcp://127.0.0.1:\(inPort)", output: c.publishEndpoint) {
                d.shutdown()
                try? FileManager.default.removeItem(atPath: c.dataDirectory)
            }
            f.daemon = d
            return f
        }
    }

    /// Both ends of a raw forwarder, bound on loopback ports of their own, high-water marks off.
    static func boundEnds(_ ctx: ZMQContext, _ front: ZMQSocket.Kind, _ back: ZMQSocket.Kind) throws -> (ZMQSocket, ZMQSocket) {
        let f = try ctx.socket(front), b = try ctx.socket(back)
        try f.setReceiveHighWaterMark(0); try b.setSendHighWaterMark(0)
        try f.bind("tcp://127.0.0.1:*"); try b.bind("tcp://127.0.0.1:*")
        return (f, b)
    }

    /// Runs a raw forwarder's loop on a thread of its own. Stopping raises `stop` (the relay's loop checks it) and
    /// shuts the context down (which ends `zmq_proxy`), then waits for the thread.
    static func forwarding(_ ctx: ZMQContext, _ front: ZMQSocket, _ back: ZMQSocket,
                           _ loop: @escaping @Sendable (borrowing Atomic<Bool>) throws -> Void) -> Forwarder {
        let stop = Atomic<Bool>(false)
        let done = DispatchSemaphore(value: 0)
        Thread { _ = tw_set_thread_name("forwarder"); try? loop(stop); front.close(); back.close(); done.signal() }.start()
        return Forwarder(input: front.lastEndpoint, output: back.lastEndpoint) {
            stop.store(true, ordering: .relaxed)
            ctx.shutdown()
            done.wait()
        }
    }

    /// The re-sequencing floor's loop: each message's two frames in, the event decoded, numbered and encoded
    /// again into the frame it came in, both frames sent on as they are (no copy, as `zmq_proxy` moves them);
    /// everything waiting is drained before polling again, as the daemon's relay does.
    static func relay(_ front: ZMQSocket, _ back: ZMQSocket, stop: borrowing Atomic<Bool>) throws {
        var subject = ZMQMessage(), payload = ZMQMessage()
        var seq: UInt64 = 0
        while !stop.load(ordering: .relaxed) {
            guard try front.waitReadable(timeoutMs: 50) else { continue }
            while try subject.receive(from: front, dontWait: true) {
                guard subject.more, try payload.receive(from: front, dontWait: true) else { continue }
                let numbered: Bool = payload.withUnsafeMutableBytes { p in
                    guard p.count == WireCodec.payloadSize, var e = try? WireCodec.decode(UnsafeRawBufferPointer(p)).event
                    else { return false }
                    seq &+= 1
                    e.seq = seq
                    WireCodec.encode(e, subjectSeq: seq, into: p.baseAddress!)
                    return true
                }
                guard numbered else { continue }
                try subject.send(on: back, more: true)
                try payload.send(on: back)
            }
        }
    }

    static let subjects = (0..<24).map { "MD.XNAS.S\($0).QUOTE" }

    /// - Parameters:
    ///   - stamp: the event time (the latency runs' monotonic send time).
    ///   - known: the known time (the latency runs' wall-clock send time, which the daemon's hand-off histogram reads).
    static func message(_ i: Int, stamp: Int64, known: Int64? = nil) -> [UInt8] {
        var e = Event.quote(0, bid: Price(e8: 100 + Int64(i % 7)), bidSize: Quantity(e8: 100), ask: Price(e8: 200), askSize: Quantity(e8: 100),
                            eventTime: Nanos(stamp), knownTime: Nanos(known ?? stamp))
        e.seq = UInt64(i)
        return WireCodec.encode(e, subjectSeq: UInt64(i))
    }

    /// Publisher and subscriber around a forwarder; returns messages/s measured at the subscriber, the process's CPU
    /// time (all threads) per message over the same window, and that CPU by thread (`ThreadShare`).
    static func throughput(_ n: Int, via path: Path) throws -> (rate: Double, cpuNanos: Double, byThread: [String: Double]) {
        let f = try startForwarder(path)
        defer { f.stop() }
        let ctx = ZMQContext()
        let (pub, sub) = try connect(ctx, f)
        let payload = message(1, stamp: 1)
        let subjectBytes = subjects.map { Array($0.utf8) }
        let senderCPU = BenchBox<Int64>(0)
        let threadsBefore = threadCPU()
        let start = tw_monotonic_ns(), cpuStart = processCPUNanos()
        let sender = Thread {
            _ = tw_set_thread_name("bench sender")
            for i in 0..<n { _ = try? pub.sendMultipart([subjectBytes[i % subjectBytes.count], payload]) }
            var ts = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
            senderCPU.set(Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec))
        }
        sender.start()
        var got = 0
        var msg = ZMQMessage()
        try sub.setReceiveTimeout(milliseconds: 5_000)
        while got < n {
            guard try msg.receive(from: sub) else { break }   // timeout: count what arrived
            if !msg.more { got += 1 }
        }
        let seconds = Double(tw_monotonic_ns() - start) / 1e9
        let cpu = Double(processCPUNanos() - cpuStart) / Double(max(got, 1))
        var byThread = account(threadsBefore, threadCPU(), messages: got)
        byThread["bench sender"] = Double(senderCPU.get) / Double(max(got, 1))
        usleep(100_000)
        return (Double(got) / seconds, cpu, byThread)
    }

    /// - Returns: for a daemon, the daemon's publish-to-hand-off p50 at most (ns), from its own histogram.
    @discardableResult
    static func latency(_ n: Int, rate: Int, via path: Path, into h: inout Histogram<UInt64>) throws -> UInt64? {
        let f = try startForwarder(path)
        defer { f.stop() }
        let ctx = ZMQContext()
        let (pub, sub) = try connect(ctx, f)
        let subject = Array(subjects[0].utf8)
        let interval = 1_000_000_000 / Int64(rate)
        let sender = Thread {
            let t0 = tw_monotonic_ns()
            for i in 0..<n {
                let due = t0 + Int64(i) * interval
                while tw_monotonic_ns() < due { tw_cpu_relax() }
                _ = try? pub.sendMultipart([subject, message(i, stamp: tw_monotonic_ns(), known: Nanos.now().rawValue)])
            }
        }
        sender.start()
        try sub.setReceiveTimeout(milliseconds: 5_000)
        for _ in 0..<n {
            guard let frames = try sub.receiveMultipart(), frames.count == 2, let (e, _) = try? WireCodec.decode(frames[1]) else { break }
            h.record(UInt64(max(0, tw_monotonic_ns() - e.eventTime.rawValue)))
        }
        guard let handOff = f.daemon?.statistics().histograms.first(where: { $0.name == "tickwire_publish_latency_seconds" })
        else { return nil }
        let s = handOff.histogram.snapshot()
        // The connect's warm-ups (known time 0) sit in the last bucket and barely move the median.
        guard let p50 = s.bounds.first(where: { $0.count * 2 >= s.count }) else { return nil }
        return UInt64(p50.le * 1e9)
    }

    /// A publisher feeding the forwarder and a subscriber on its far side, joined (a warm-up message seen).
    static func connect(_ ctx: ZMQContext, _ f: Forwarder) throws -> (ZMQSocket, ZMQSocket) {
        let pub = try ctx.socket(.pub)
        try pub.setSendHighWaterMark(0)
        if f.input.hasPrefix("bind:") { try pub.bind(String(f.input.dropFirst(5))) } else { try pub.connect(f.input) }
        let sub = try ctx.socket(.sub)
        try sub.setReceiveHighWaterMark(0)
        try sub.subscribe("")
        try sub.connect(f.output)
        try sub.setReceiveTimeout(milliseconds: 50)
        let warm = [Array("SYS.WARMUP".utf8), message(0, stamp: 0)]
        for _ in 0..<400 {
            try pub.sendMultipart(warm)
            if try sub.receiveMultipart() != nil { break }
        }
        // Drain warm-ups still in flight.
        usleep(100_000)
        while try sub.receiveMultipart(dontWait: true) != nil {}
        return (pub, sub)
    }

    static func processCPUNanos() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    static func freeTCPPort() -> Int {
        let ctx = ZMQContext()
        guard let s = try? ctx.socket(.pub), (try? s.bind("tcp://127.0.0.1:*")) != nil else { return 0 }
        let port = Int(s.lastEndpoint.split(separator: ":").last ?? "0") ?? 0
        s.close()
        return port
    }

    static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        return s.isEmpty ? 0 : s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
}
