import Foundation
import Histogram
import TickwireCore
import TickwireDaemon
import TickwireNATS
import TickwireTestSupport
import TickwireZMQ

/// `tickwire-bench replicated`: trades through an active/active pair (two trade services, one JetStream log on a
/// three-server cluster started for the run) beside, in the same run, a raw JetStream asynchronous publisher of
/// the same messages with the same window (the floor: what the cluster itself acknowledges) and the single
/// daemon with its local journal. Then a leader failover under a steady 1,000 trades/s, its outage beside the
/// raw publisher's through the same kind of kill.
///
/// Parameters: `window` (trades in flight per client, default 512), `clients` (2: one per daemon),
/// `rate` (failover pacing, 1000), `failover` (1 to run it, default 1), `paths` (which throughput paths to run,
/// comma-separated, default `raw,floor,pair,single`: one alone to profile it; ratios need raw, floor and pair).
enum ReplicatedBench {
    static func run(_ options: BenchOptions) throws -> Report {
        func param(_ k: String, _ d: Int) -> Int { options.parameters[k].flatMap(Int.init) ?? d }
        let trades = options.events == 10_000_000 ? 20_000 : options.events
        let window = param("window", 512), clients = param("clients", 2), batch = param("batch", 1)
        let root = options.directory + "/replicated-\(getpid())"
        try? FileManager.default.removeItem(atPath: root)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let cluster = try NATSCluster(size: 3, name: "bench")
        serverPids = cluster.pids
        var n = 0
        func fresh() -> String { n += 1; let d = root + "/\(n)"; try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true); return d }

        // The paths run in a rotated order each round (round r starts at the r-th), and each one's stream is deleted
        // after it, so that no path always follows another's burst (the servers keep working on a stream for a
        // while after it was written: snapshots, compaction) and each meets the same, empty cluster.
        let order = ["raw", "floor", "pair", "single"]
        let paths = Set((options.parameters["paths"] ?? order.joined(separator: ",")).split(separator: ",").map(String.init))
        let admin = try NATSConnection(.init(servers: cluster.servers.map(\.url)))
        defer { admin.close() }
        let adminJS = try admin.jetStream()
        var rounds: [Report.Round] = []
        var pairRates: [Double] = [], rawRates: [Double] = [], floorRates: [Double] = [], singleRates: [Double] = []
        var cpuRatios: [Double] = []
        for round in 0..<(param("throughput", 1) == 1 ? max(1, options.runs) : 0) {
            var results: [String: Result] = [:]
            for k in 0..<order.count {
                let path = order[(round + k) % order.count]
                guard paths.contains(path) else { continue }
                let stream = path.uppercased() + "\(round)"
                let result: Result
                switch path {
                case "raw": result = try rawPublisher(cluster, stream: stream, trades: trades, window: window * clients)
                case "floor": result = try rawPipeline(cluster, stream: stream, directory: fresh(), trades: trades, window: window * clients)
                case "pair": result = try pairRun(cluster, dirs: (fresh(), fresh()), stream: stream, trades: trades, window: window, clients: clients, batch: batch)
                default: result = try singleRun(fresh(), trades: trades, window: window, clients: clients, batch: batch)
                }
                results[path] = result
                if path != "single" { try? adminJS.deleteStream(stream) }
                sleep(1)
            }
            let zero = Result(rate: 0, latency: Histogram<UInt64>(numberOfSignificantValueDigits: .three), trades: 0)
            let (raw, floor, pair, single) = (results["raw"] ?? zero, results["floor"] ?? zero, results["pair"] ?? zero, results["single"] ?? zero)
            rawRates.append(raw.rate); floorRates.append(floor.rate); pairRates.append(pair.rate); singleRates.append(single.rate)
            cpuRatios.append(ratio(Double(pair.cpuNanos) / Double(max(1, pair.trades)), Double(floor.cpuNanos) / Double(max(1, floor.trades))))
            rounds.append(Report.Round(rawJetstream: raw.json, rawPipeline: floor.json, pair: pair.json, singleDaemon: single.json,
                                       pairVsRaw: ratio(pair.rate, raw.rate), pairVsRawPipeline: ratio(pair.rate, floor.rate)))
        }
        var report = Report()
        if !rounds.isEmpty {
            report.throughput = Report.Throughput(
                tradesPerRun: trades, windowPerClient: window, clients: clients, tradesPerClientMessage: batch, rounds: rounds,
                pairVsRawJetstreamMedian: median(zip(pairRates, rawRates).map(ratio)),
                pairVsRawPipelineMedian: median(zip(pairRates, floorRates).map(ratio)),
                pairVsSingleDaemonMedian: median(zip(pairRates, singleRates).map(ratio)),
                pairCpuPerTradeVsRawPipelineMedian: median(cpuRatios))
        }
        if param("failover", 1) == 1 {
            report.failover = try failover(cluster, root: fresh(), rate: param("rate", 1_000))
        }
        return report
    }

    struct Report: BenchReport {
        var suite = "replicated"
        /// `rawPipeline`: the machine's floor for the pair's shape (ReplicatedFloor.swift).
        struct Round: Codable, Sendable { var rawJetstream: Path, rawPipeline: Path, pair: Path, singleDaemon: Path, pairVsRaw: Double, pairVsRawPipeline: Double }
        /// `cpuUsPerTrade`: CPU time of this process and the cluster's servers while the path's clock runs, divided
        /// by its trades: on a shared machine whose cores are all busy, rates follow it.
        struct Path: Codable, Sendable { var acksPerS: Int, ackUs: Micros, cpuUsPerTrade: Double }
        struct Throughput: Codable, Sendable {
            var tradesPerRun: Int, windowPerClient: Int, clients: Int, tradesPerClientMessage: Int
            var rounds: [Round]
            var pairVsRawJetstreamMedian: Double, pairVsRawPipelineMedian: Double, pairVsSingleDaemonMedian: Double
            /// The pair's CPU per trade ÷ the floor's (this process and the servers).
            var pairCpuPerTradeVsRawPipelineMedian: Double
            var goal = "pair >= 0.8x the raw JetStream async publisher's acknowledged rate, same messages, same window"
        }
        var throughput: Throughput?
        struct Failover: Codable, Sendable {
            var offeredPerS: Int, acknowledged: Int
            var pairOutageMs: Int64, rawJetstreamOutageMs: Int64, pairOutageMinusRawMs: Int64
            var acksPerSFromKillToEnd: Int
            var goal = "outage <= the raw publisher's (the election) + 1000 ms; >= 1000 trades/s sustained"
        }
        var failover: Failover?
    }

    struct Result {
        var rate: Double
        var latency: Histogram<UInt64>
        var trades: Int
        var cpuNanos: Int64 = 0
        var json: Report.Path {
            Report.Path(acksPerS: Int(rate), ackUs: Micros(latency, tail: false),
                        cpuUsPerTrade: trades > 0 ? (Double(cpuNanos) / Double(trades) / 10).rounded() / 100 : 0)
        }
    }

    /// The cluster's servers, whose CPU time `cpuNanos` adds to this process's.
    nonisolated(unsafe) static var serverPids: [pid_t] = []

    /// CPU time (user and system) of this process and of the cluster's servers so far: each path reads it when its
    /// clock starts and stops (the steady state; set-up excluded, as from its rate).
    static func cpuNanos() -> Int64 {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func ns(_ t: timeval) -> Int64 { Int64(t.tv_sec) * 1_000_000_000 + Int64(t.tv_usec) * 1_000 }
        var total = ns(usage.ru_utime) + ns(usage.ru_stime)
        let tick = Int64(sysconf(Int32(_SC_CLK_TCK)))
        for pid in serverPids {
            // /proc/PID/stat: fields 14 and 15 (utime, stime) in clock ticks, after the parenthesised name.
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 13, let u = Int64(fields[11]), let s = Int64(fields[12]) else { continue }
            total += (u + s) * 1_000_000_000 / tick
        }
        return total
    }

    static func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s[s.count / 2] }
    /// a ÷ b to two places; 0 when b was not run.
    static func ratio(_ a: Double, _ b: Double) -> Double { b > 0 ? (a / b * 100).rounded() / 100 : 0 }

    static func request(_ c: Int, _ i: Int) -> TradeRequest {
        TradeRequest(trader: "trader1", desk: "D\(c)", symbol: "AAPL", side: i % 2 == 0 ? .buy : .sell,
                     quantity: Quantity(e8: 100_000_000), price: Price(e8: 18_725_000_000), clientOrderID: "c\(c)-\(i)")
    }

    /// The floor: the same replicated messages published asynchronously to a three-replica stream, `window` in
    /// flight, each acknowledged by the cluster.
    static func rawPublisher(_ cluster: NATSCluster, stream: String, trades: Int, window: Int) throws -> Result {
        let stamps = Stamps(trades)
        let latency = BenchBox(Histogram<UInt64>(numberOfSignificantValueDigits: .three))
        let acked = BenchBox(0)
        let raw = try RawStream(cluster, stream: stream, trades: trades, window: window, origin: "raw") { i, result in
            let now = benchNow()
            guard case .success = result else { return }
            latency.update { _ = $0.record(UInt64(max(0, now - stamps.times[i]))) }
            acked.update { $0 += 1 }
        }
        _ = try retrying { try raw.js.publish(raw.subject, bytes: [0], msgId: "warm-up") }
        let (t0, cpu0) = (benchNow(), cpuNanos())
        for i in 0..<trades {
            stamps.times[i] = benchNow()
            raw.publish(i)
        }
        try raw.js.publishAsyncComplete(timeoutMs: 60_000)
        let t = Double(benchNow() - t0) / 1e9
        guard acked.get == trades else { throw BenchError.failed("raw JetStream: \(acked.get) of \(trades) acknowledged") }
        return Result(rate: Double(trades) / t, latency: latency.get, trades: trades, cpuNanos: cpuNanos() - cpu0)
    }

    /// The baselines' side of the cluster: a connection, a three-replica stream, the same replicated requests
    /// encoded once, and their asynchronous publishes (`Nats-Msg-Id` ORIGIN-i); `answered(i, result)` gets the
    /// cluster's answer for request i.
    final class RawStream {
        let conn: NATSConnection
        let js: JetStream
        let subject: String
        private let origin: String
        private let messages: [[UInt8]]

        init(_ cluster: NATSCluster, stream: String, trades: Int, window: Int, origin: String,
             answered: @escaping @Sendable (Int, Swift.Result<JetStream.PubAck, NATSError>) -> Void) throws {
            conn = try NATSConnection({ var o = NATSConnection.Options(servers: cluster.servers.map(\.url)); o.sendAsap = true; return o }())
            var options = JetStream.Options()
            options.maxPendingAsync = Int64(window)
            options.onAsyncAck = { id, result in
                guard let id, let i = Int(id.split(separator: "-").last ?? "") else { return }
                answered(i, result)
            }
            let js = try conn.jetStream(options)
            self.js = js
            subject = stream + ".requests"
            var config = JetStream.StreamConfig(name: stream, subjects: [subject])
            config.replicas = 3
            _ = try retrying { try js.addStream(config) }
            self.origin = origin
            messages = (0..<trades).map { TradeWire.encodeSequenced(request(0, $0), receivedNanos: 0, markE8: 0, origin: origin) }
        }

        /// Publishes request i, trying again while libnats has no room.
        func publish(_ i: Int) {
            while true {
                do { try js.publishAsync(subject, bytes: messages[i], msgId: "\(origin)-\(i)"); return } catch { continue }
            }
        }

        deinit { conn.close() }
    }

    /// Drives trade services with `clients` CURVE clients (client c on endpoint c % endpoints), `window` trades
    /// in flight each; every trade must be acknowledged.
    static func drive(_ endpoints: [String], dataDirectory: String, trades: Int, window: Int, clients: Int, batch: Int = 1) throws -> Result {
        let latency = BenchBox(Histogram<UInt64>(numberOfSignificantValueDigits: .three))
        let failures = BenchBox(0)
        let per = trades / clients
        let (t0, cpu0) = (benchNow(), cpuNanos())
        let threads = (0..<clients).map { c in
            BenchThread {
                let ctx = ZMQContext()
                guard let client = try? TradeClient.forDataDirectory(dataDirectory, context: ctx, endpoint: endpoints[c % endpoints.count]) else {
                    failures.update { $0 += 1 }; return
                }
                defer { client.close() }
                var sentAt = [Int64](repeating: 0, count: per)
                var h = Histogram<UInt64>(numberOfSignificantValueDigits: .three)
                var sent = 0, acked = 0
                while acked < per {
                    while sent < per && sent - acked < window {
                        let n = min(batch, per - sent, window - (sent - acked))
                        let now = benchNow()
                        for i in sent..<sent + n { sentAt[i] = now }
                        if (try? client.send(batch: (sent..<sent + n).map { request(c, $0) })) == nil { failures.update { $0 += 1 }; return }
                        sent += n
                    }
                    guard let reply = try? client.receive(timeoutMs: 30_000) else { failures.update { $0 += 1 }; return }
                    acked += 1
                    guard case .ack(let id, _, _) = reply, let i = Int(id.split(separator: "-").last ?? "") else {
                        failures.update { $0 += 1 }; continue
                    }
                    _ = h.record(UInt64(max(0, benchNow() - sentAt[i])))
                }
                let mine = h
                latency.update { $0.add(mine) }
            }
        }
        threads.forEach { $0.join() }
        let (t, cpu) = (Double(benchNow() - t0) / 1e9, cpuNanos() - cpu0)
        if failures.get > 0 { throw BenchError.failed("\(failures.get) trades not acknowledged") }
        return Result(rate: Double(per * clients) / t, latency: latency.get, trades: per * clients, cpuNanos: cpu)
    }

    /// Two trade services replicating through `stream`: b shares a's keys.
    static func startPair(_ cluster: NATSCluster, dirs: (String, String), stream: String,
                          log: (@Sendable (String) -> Void)? = nil) throws -> ([ZMQContext], [TradeService]) {
        // A context each: the ZAP handler binds one inproc endpoint per context.
        let contexts = [ZMQContext(), ZMQContext()]
        var services: [TradeService] = []
        for (i, dir) in [dirs.0, dirs.1].enumerated() {
            if i == 1 { try FileManager.default.copyItem(atPath: dirs.0 + "/keys", toPath: dir + "/keys") }
            var config = TradeServiceConfig(endpoint: "tcp://127.0.0.1:*")
            var replication = TradeReplicationConfig(servers: cluster.servers.map(\.url), node: i == 0 ? "a" : "b")
            replication.stream = stream
            replication.subject = stream + ".requests"
            config.replication = replication
            let node = i == 0 ? "a" : "b"
            let service = TradeService(config: config, dataDirectory: dir, context: contexts[i],
                                       log: { line in log?("\(node): \(line)") })
            try service.start()
            services.append(service)
        }
        // Serving once each has applied the whole log: a trade through each, retried until acknowledged.
        for (i, s) in services.enumerated() {
            let ctx = ZMQContext()
            let client = try TradeClient.forDataDirectory(dirs.0, context: ctx, endpoint: s.boundEndpoint)
            defer { client.close() }
            _ = try retrying(seconds: 60) { () throws -> Void in
                guard case .ack = try client.submit(request(9, i), timeoutMs: 15_000) else { throw BenchError.failed("not ready") }
            }
        }
        return (contexts, services)
    }

    static func pairRun(_ cluster: NATSCluster, dirs: (String, String), stream: String, trades: Int, window: Int,
                        clients: Int, batch: Int) throws -> Result {
        let (context, services) = try startPair(cluster, dirs: dirs, stream: stream)
        defer { services.forEach { $0.stop() }; withExtendedLifetime(context) {} }
        return try drive(services.map(\.boundEndpoint), dataDirectory: dirs.0, trades: trades, window: window, clients: clients, batch: batch)
    }

    static func singleRun(_ dir: String, trades: Int, window: Int, clients: Int, batch: Int) throws -> Result {
        let context = ZMQContext()
        let service = TradeService(config: TradeServiceConfig(endpoint: "tcp://127.0.0.1:*"), dataDirectory: dir, context: context)
        try service.start()
        defer { service.stop() }
        return try drive([service.boundEndpoint], dataDirectory: dir, trades: trades, window: window, clients: clients, batch: batch)
    }

    /// A steady `rate` of trades through the pair while the stream's leader is killed: the longest time with no
    /// acknowledgement, beside the raw publisher's through a kill of its stream's leader.
    static func failover(_ cluster: NATSCluster, root: String, rate: Int) throws -> Report.Failover {
        let dirs = (root + "/a", root + "/b")
        try FileManager.default.createDirectory(atPath: dirs.0, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dirs.1, withIntermediateDirectories: true)
        let t00 = benchNow()
        let (context, services) = try startPair(cluster, dirs: dirs, stream: "FAILOVER", log: { line in
            FileHandle.standardError.write(Data("[\((benchNow() - t00) / 1_000_000) ms] \(line)\n".utf8))
        })
        defer { services.forEach { $0.stop() }; withExtendedLifetime(context) {} }
        let probe = try NATSConnection(.init(servers: cluster.servers.map(\.url)))
        let js = try probe.jetStream()
        let seconds = 20
        let acks = BenchBox([Int64]())
        let stop = BenchBox(false)
        let driver = BenchThread {
            let ctx = ZMQContext()
            guard let client = try? TradeClient.forDataDirectory(dirs.0, context: ctx,
                                                                  endpoint: services.map(\.boundEndpoint).joined(separator: ",")) else { return }
            defer { client.close() }
            // The same retrying submitter as `tickwire trade submit --connect A,B`: the same id again after 2 s
            // without a reply, or half a second after a refusal for an unavailable log.
            let submitter = RetryingSubmitter(client: client, policy: .init(
                resendAfterMs: 2_000, resendRefusedAfterMs: 500, giveUpAfterMs: 120_000,
                transient: [.replicationUnavailable, .journalUnavailable]))
            var next = 0
            let start = benchNow(), interval = 1_000_000_000 / Int64(rate)
            while !stop.get || submitter.outstanding > 0 {
                let now = benchNow()
                while !stop.get && now - start >= Int64(next) * interval {
                    try? submitter.send([request(5, next)]); next += 1
                }
                let replied = (try? submitter.poll(timeoutMs: 0) { outcome in
                    if case .replied(.ack) = outcome { let t = benchNow(); acks.update { $0.append(t) } }
                }) ?? false
                if !replied { usleep(200) }
            }
        }
        sleep(5)
        let leader = try js.streamInfo("FAILOVER").leader ?? ""
        guard let index = cluster.servers.firstIndex(where: { $0.name == leader }) else { throw BenchError.failed("no leader") }
        let killedAt = benchNow()
        cluster.kill(index)
        sleep(UInt32(seconds - 5))
        stop.set(true)
        driver.join()
        try cluster.start(index)
        try cluster.waitReady(index, routes: 2)
        let times = acks.get.sorted()
        let gaps = zip(times.dropFirst(), times).map { $0 - $1 }
        let outage = gaps.max() ?? 0
        let during = times.filter { $0 >= killedAt }
        let sustained = during.count > 1 ? Double(during.count) / (Double(during.last! - killedAt) / 1e9) : 0
        let rawOutage = try rawFailover(cluster)
        return Report.Failover(
            offeredPerS: rate, acknowledged: times.count,
            pairOutageMs: outage / 1_000_000, rawJetstreamOutageMs: rawOutage / 1_000_000,
            pairOutageMinusRawMs: (outage - rawOutage) / 1_000_000, acksPerSFromKillToEnd: Int(sustained))
    }

    /// The raw publisher's outage through a kill of its stream's leader: synchronous publishes in a loop, the
    /// longest time between two acknowledged ones.
    static func rawFailover(_ cluster: NATSCluster) throws -> Int64 {
        let conn = try NATSConnection(.init(servers: cluster.servers.map(\.url)))
        let js = try conn.jetStream({ var o = JetStream.Options(); o.waitMs = 1_000; return o }())
        var config = JetStream.StreamConfig(name: "RAWFAIL", subjects: ["RAWFAIL.x"])
        config.replicas = 3
        _ = try retrying { try js.addStream(config) }
        var acked: [Int64] = []
        var i = 0
        let start = benchNow()
        var killed: Int?
        while benchNow() - start < 20_000_000_000 {
            if killed == nil && benchNow() - start > 3_000_000_000 {
                let leader = try retrying { try js.streamInfo("RAWFAIL").leader ?? "" }
                killed = cluster.servers.firstIndex { $0.name == leader }
                if let k = killed { cluster.kill(k) }
            }
            if (try? js.publish("RAWFAIL.x", bytes: [1], msgId: "r\(i)")) != nil { acked.append(benchNow()); i += 1 } else { usleep(10_000) }
        }
        if let k = killed { try cluster.start(k); try cluster.waitReady(k, routes: 2) }
        return zip(acked.dropFirst(), acked).map { $0 - $1 }.max() ?? 0
    }

    /// Send times written by the publishing thread before each publish and read by the acknowledgement handler
    /// after its acknowledgement (the network round trip orders them).
    final class Stamps: @unchecked Sendable {
        let times: UnsafeMutableBufferPointer<Int64>
        init(_ n: Int) { times = .allocate(capacity: n); times.initialize(repeating: 0) }
        deinit { times.deallocate() }
    }

}
