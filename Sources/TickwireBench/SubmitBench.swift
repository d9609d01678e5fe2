import CTickwireSys
import Foundation
import Histogram
import TickwireCore
import TickwireTestSupport
import TickwireTradeClient
import TickwireZMQ

/// `tickwire-bench submit`: the path a user types, `tickwire trade submit --file trades.jsonl`, end to end (the
/// process started, the file read, every trade sent over CURVE to a real `tickwire run`, the last
/// acknowledgement printed, the process exited), beside what the trade service does without the command, in
/// interleaved rounds:
/// - `service_in_process`: the trade service in this process, `service_clients` in-process clients each keeping
///   2,048 trades in flight, `service_batch` a message (the journal suite's `trades_acked_over_zeromq_curve_batched`);
/// - `daemon_pre_encoded`: a fresh `tickwire run` like the command's, fed by one in-process DEALER with the
///   command's shape (`batch` a message, `window` in flight) from SUBMIT frames encoded before the clock starts:
///   what that daemon acknowledges for one connection when the client costs nothing;
/// - `command`: the real `tickwire trade submit --file` process against a fresh `tickwire run`;
/// - SQLite (WAL, synchronous=FULL, a transaction per trade), the journal suite's baseline;
/// - with `before_binary=PATH`, the same command from another build of `tickwire` (before a change).
///
/// Each daemon runs the simulator at one event a second (idle), risk limits off, and the trades are in a symbol
/// it does not simulate (no price collar), so every trade is acknowledged.
///
/// Parameters (`key=value`): `trades` (200000), `batch` (64) and `window` (8192): the command's defaults,
/// `service_clients` (4), `service_batch` (32), `sqlite_records` (3000), `before_binary` (none), `latency_rate` (20000),
/// `latency_batch` (10) and `latency_seconds` (16) for `only=latency`, `only` (`command`:
/// the command alone, e.g. under perf; the ratios then mean nothing).
enum SubmitBench {
    static func run(_ options: BenchOptions) throws -> any BenchReport {
        let p = options.parameters
        func param(_ k: String, _ d: Int) -> Int { p[k].flatMap(Int.init) ?? d }
        let trades = param("trades", 200_000), batch = param("batch", 64), window = param("window", 8192)
        // `only=command`: the command alone (e.g. under perf). `only=latency`: acknowledgement latency at a pace.
        let only = p["only"]
        if only == "latency" {
            return try latency(rate: param("latency_rate", 20_000), batch: param("latency_batch", 10), seconds: param("latency_seconds", 16),
                               directory: options.directory)
        }
        let root = options.directory + "/submit-bench-\(getpid())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        var n = 0
        func fresh() -> String { n += 1; return root + "/\(n)" }
        let file = root + "/trades.jsonl"
        try writeTrades(to: file, count: trades)
        let config = root + "/daemon.toml"
        try daemonConfig.write(toFile: config, atomically: true, encoding: .utf8)

        let before = p["before_binary"]
        // CPU time of the command process a trade (user + system, µs): what the command costs the machine, which a
        // loaded machine's wall clock hides. And each path's whole CPU a trade (every process it runs in).
        var commandCPU: [Double] = [], beforeCPU: [Double] = []
        // The same file submitted again to the same daemon right after (every trade a retry of an acknowledged one,
        // as a client's resend after a failover): its rate beside the first submission's, round by round.
        var resubmitted: [Double] = []
        var pathCPU: [String: [Double]] = [:]
        func note(_ name: String, _ micros: Double) { pathCPU[name, default: []].append((micros * 100).rounded() / 100) }
        func timed(_ cpu: inout [Double], _ name: String, _ binary: String, resubmit: Bool = false) throws -> Double {
            let r = try command(file: file, trades: trades, batch: batch, window: window, config: config, data: fresh(), binary: binary,
                                resubmit: resubmit)
            if let again = r.resubmittedRate { resubmitted.append(again.rounded()) }
            cpu.append((r.cpuMicrosPerTrade * 100).rounded() / 100)
            note(name, r.pathCPUMicrosPerTrade)
            return r.rate
        }
        var names: [String] = [], measures: [() -> Double] = []
        func add(_ name: String, _ body: @escaping () throws -> Double) {
            names.append(name)
            measures.append { do { return try body() } catch { fatalError("submit bench, \(name): \(error)") } }
        }
        if let before { add("command_before") { try timed(&beforeCPU, "command_before", before) } }
        if only == nil {
            add("service_in_process") {
                let cpu0 = E2EBench.processCPUNanos()
                let rate = try JournalBench.tradesOverZMQ(fresh(), clients: param("service_clients", 4), records: trades,
                                                          batch: param("service_batch", 32))
                note("service_in_process", Double(E2EBench.processCPUNanos() - cpu0) / 1e3 / Double(trades))
                return rate
            }
            add("daemon_pre_encoded") {
                let r = try preEncoded(trades: trades, batch: batch, window: window, config: config, data: fresh())
                note("daemon_pre_encoded", r.pathCPUMicrosPerTrade)
                return r.rate
            }
        }
        add("command") { try timed(&commandCPU, "command", tickwireBinary, resubmit: only == nil) }
        if only == nil { add("sqlite") { try JournalBench.sqliteRate(fresh(), records: param("sqlite_records", 3000)) } }
        let r = interleaved(options.runs, measures)
        func rounds(_ name: String) -> [Double] { names.firstIndex(of: name).map { r[$0].rounds.map { $0.rounded() } } ?? [] }
        func med(_ xs: [Double]) -> Double { xs.isEmpty ? 0 : xs.sorted()[xs.count / 2] }
        let rates = Result.Rates(serviceInProcess: rounds("service_in_process"), daemonPreEncoded: rounds("daemon_pre_encoded"),
                                 command: rounds("command"), sqlite: rounds("sqlite"),
                                 commandBefore: before == nil ? nil : rounds("command_before"))
        // The command against each of the others, round by round (a ratio of measures that ran is reported).
        let against = [("service_in_process", rates.serviceInProcess), ("daemon_pre_encoded", rates.daemonPreEncoded),
                       ("sqlite", rates.sqlite), ("command_before", rates.commandBefore ?? [])].filter { !$0.1.isEmpty }
        return Result(
            trades: trades, batch: batch, window: window, runs: options.runs,
            loadAverage_1m: (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").first.map(String.init) ?? "?",
            perSecondRounds: rates,
            perSecondMedian: .init(serviceInProcess: med(rates.serviceInProcess), daemonPreEncoded: med(rates.daemonPreEncoded),
                                   command: med(rates.command), sqlite: med(rates.sqlite), commandBefore: rates.commandBefore.map(med)),
            beforeBinary: before,
            commandCpuMicrosPerTradeRounds: .init(command: commandCPU, commandBefore: before == nil ? nil : beforeCPU),
            pathCpuMicrosPerTradeRounds: pathCPU,
            resubmittedPerSecondRounds: resubmitted,
            resubmittedVsFirstMedianOfRounds: resubmitted.isEmpty ? nil : medianRatio(resubmitted, rates.command),
            ratiosMedianOfRounds: Dictionary(uniqueKeysWithValues: against.map { ("command_vs_\($0.0)", medianRatio(rates.command, $0.1)) }),
            ratiosByRound: Dictionary(uniqueKeysWithValues: against.map { name, xs in ("command_vs_\(name)", zip(rates.command, xs).map { ratio($0, $1) }) }))
    }

    struct Result: BenchReport {
        var suite = "submit"
        var trades: Int, batch: Int, window: Int, runs: Int
        var loadAverage_1m: String
        struct Rates<T: Codable & Sendable>: Codable, Sendable {
            var serviceInProcess: T, daemonPreEncoded: T, command: T, sqlite: T
            /// The command from `before_binary`.
            var commandBefore: T?
        }
        var perSecondRounds: Rates<[Double]>
        var perSecondMedian: Rates<Double>
        var beforeBinary: String?
        struct CPU: Codable, Sendable { var command: [Double], commandBefore: [Double]? }
        var commandCpuMicrosPerTradeRounds: CPU
        /// Each path's CPU a trade, every process of it (µs): the service's process (service and clients); the
        /// daemon and this process's client; the daemon and the command. Steadier than rates on a shared machine.
        var pathCpuMicrosPerTradeRounds: [String: [Double]]
        /// The command run again with the same file against the same daemon: every trade answered as a duplicate
        /// (found through the retry index and read back from the journal). Not in the command's rates.
        var resubmittedPerSecondRounds: [Double]
        var resubmittedVsFirstMedianOfRounds: Double?
        var ratiosMedianOfRounds: [String: Double]
        var ratiosByRound: [String: [Double]]
    }

    /// `only=latency`: acknowledgement latency through a real `tickwire run` at a steady pace, for long enough to
    /// cover several of the trade service's checkpoints (every 5 s): one in-process DEALER sends `batch` trades
    /// packed every `batch / rate` seconds, each timed from just before its send to its reply. Beside it, in the
    /// same run and on the same file system, the device's own floor: a 128-byte write and `fdatasync` every 10 ms
    /// (`DeviceProbe`), which no acknowledgement can beat.
    struct LatencyResult: BenchReport {
        var suite = "submit"
        var only = "latency"
        var ratePerS: Int, batch: Int, seconds: Int
        var acknowledgementNs: E2EBench.Percentiles
        var deviceFsyncNs: E2EBench.Percentiles
        /// Acknowledgements that took longer than 50 ms, and when (tenths of a second into the run) they were sent.
        var acknowledgementsOver50ms: Int
        var over50msSentAtTenthsOfASecond: [Int]
        var p99OverFsyncP99: Double, p99_9OverFsyncP99: Double
    }

    static func latency(rate: Int, batch: Int, seconds: Int, directory: String) throws -> LatencyResult {
        let root = directory + "/submit-latency-\(getpid())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let config = root + "/daemon.toml"
        try daemonConfig.write(toFile: config, atomically: true, encoding: .utf8)
        let daemon = try Daemon(config: config, data: root + "/data")
        let probe = DeviceProbe(path: root + "/device-probe")
        defer { probe.stop() }
        let context = ZMQContext()
        let socket = try daemon.dealer(context)
        defer { socket.close() }
        var h = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        let total = rate * seconds
        var sentAt = [Int64](repeating: 0, count: total)
        var sent = 0, answered = 0, slow = 0
        var slowAt = Set<Int>()   // tenths of a second into the run when a trade answered after 50 ms was sent
        let interval = Int64(1_000_000_000) * Int64(batch) / Int64(rate)
        let t0 = tw_monotonic_ns()
        func take() throws {
            while let frames = try socket.receiveMultipart(dontWait: true) {
                let now = tw_monotonic_ns()
                for reply in try TradeWire.decodeReplies(message: frames) {
                    guard case .ack(let id, _, _) = reply, let i = Int(id.dropFirst(4)) else {
                        throw BenchError.failed("a trade was not acknowledged: \(reply)")
                    }
                    let ns = UInt64(max(0, now - sentAt[i]))
                    h.record(ns)
                    if ns > 50_000_000 { slow += 1; slowAt.insert(Int((sentAt[i] - t0) / 100_000_000)) }
                    answered += 1
                }
            }
        }
        while sent < total {
            let due = t0 + Int64(sent / batch) * interval
            while tw_monotonic_ns() < due { try take(); tw_cpu_relax() }
            let frames = (sent..<min(total, sent + batch)).map { i in
                var r = request(i)
                r.clientOrderID = "lat-\(i)"
                return TradeWire.encodeRequest(r)
            }
            let now = tw_monotonic_ns()
            for i in sent..<sent + frames.count { sentAt[i] = now }
            try socket.send(TradeWire.pack(TradeWire.submitPacked, frames))
            sent += frames.count
        }
        let deadline = tw_monotonic_ns() + 30_000_000_000
        while answered < total && tw_monotonic_ns() < deadline { try take(); usleep(100) }
        guard answered == total else { throw BenchError.failed("\(total - answered) of \(total) trades unanswered after 30 s") }
        probe.stop()
        var f = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        for ns in probe.syncNanos { f.record(UInt64(max(0, ns))) }
        let fsyncP99 = Double(max(1, f.valueAtPercentile(99)))
        func round2(_ x: Double) -> Double { (x * 100).rounded() / 100 }
        return LatencyResult(ratePerS: rate, batch: batch, seconds: seconds, acknowledgementNs: .init(h), deviceFsyncNs: .init(f),
                             acknowledgementsOver50ms: slow, over50msSentAtTenthsOfASecond: slowAt.sorted(), p99OverFsyncP99: round2(Double(h.valueAtPercentile(99)) / fsyncP99),
                             p99_9OverFsyncP99: round2(Double(h.valueAtPercentile(99.9)) / fsyncP99))
    }

    /// Risk limits off (every trade is acknowledged, none refused by a limit the bench would have to size), and a
    /// simulator of one event a second in a symbol the trades do not use. Tools/trade_daemon.toml is the same
    /// config for the A/B scripts (this binary does not read files of the tree).
    static let daemonConfig = """
        [sim]
        rate = 1
        symbols = ["SIMX"]

        [risk.default]
        max_position = "none"
        max_gross_notional = "none"
        max_loss = "none"
        max_order_quantity = "none"
        max_order_notional = "none"
        price_collar_bps = "none"

        """

    /// The trades of every run: desks, symbols and sides varied, quantities as numbers and strings alike.
    static func request(_ i: Int) -> TradeRequest {
        TradeRequest(desk: "DESK\(i % 8)", symbol: ["AAPL", "MSFT", "NVDA", "AMZN"][i % 4], side: i % 2 == 0 ? .buy : .sell,
                     quantity: Quantity(e8: Int64(1 + i % 500) * 100_000_000), price: Price(e8: 18_725_000_000 + Int64(i % 997) * 1_000_000),
                     clientOrderID: "bench-\(i)")
    }

    static func writeTrades(to path: String, count: Int) throws {
        var text = ""
        text.reserveCapacity(count * 110)
        for i in 0..<count {
            let r = request(i)
            let qty = i % 3 == 0 ? "\"\(r.quantity)\"" : "\(r.quantity)"
            text += "{\"desk\":\"\(r.desk)\",\"symbol\":\"\(r.symbol)\",\"side\":\"\(r.side)\",\"qty\":\(qty),\"price\":\"\(r.price)\",\"id\":\"\(r.clientOrderID)\"}\n"
        }
        try text.write(toFile: path, atomically: false, encoding: .utf8)
    }

    /// A `tickwire run` on free loopback ports with its own data directory, stopped (SIGTERM, then SIGKILL) by its
    /// own pid when released.
    final class Daemon {
        let child: ChildProcess
        let tradeEndpoint: String
        let data: String

        init(config: String, data: String) throws {
            self.data = data
            tradeEndpoint = "tcp://127.0.0.1:\(freePort())"
            child = try ChildProcess(tickwireBinary, ["run", "--config", config, "--data", data, "--trades", tradeEndpoint,
                                                      "--pub", "tcp://127.0.0.1:\(freePort())", "--metrics", "127.0.0.1:\(freePort())"])
            guard child.waitForOutput("tickwire running", seconds: 60) else {
                child.kill9()
                throw BenchError.failed("tickwire run did not start: \(child.stderr.suffix(2000))")
            }
        }

        /// The daemon's CPU so far (user + system, µs), from /proc.
        var cpuMicros: Double {
            guard let stat = try? String(contentsOfFile: "/proc/\(child.pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return 0 }
            // Fields after the command's name: state is field 3, utime 14 and stime 15.
            let f = stat[stat.index(after: close)...].split(separator: " ")
            guard f.count > 12, let u = Double(f[11]), let s = Double(f[12]) else { return 0 }
            return (u + s) * 1e6 / Double(sysconf(Int32(_SC_CLK_TCK)))
        }

        /// A CURVE DEALER of the daemon's first trader, connected, high-water marks off.
        func dealer(_ context: ZMQContext) throws -> ZMQSocket {
            let server = try CurveKeyPair.read(from: KeyStore.serverPath(data))
            let keys = try KeyStore.traderPair(data: data, name: nil)
            let socket = try context.socket(.dealer)
            try socket.setCurveClient(serverKey: server.publicKey, publicKey: keys.publicKey, secretKey: keys.secretKey!)
            try socket.setSendHighWaterMark(0)
            try socket.setReceiveHighWaterMark(0)
            try socket.connect(tradeEndpoint)
            return socket
        }

        deinit {
            child.signal(SIGTERM)
            if child.wait(seconds: 20) == nil { child.kill9() }
            try? FileManager.default.removeItem(atPath: data)
        }
    }

    /// `tickwire trade submit --file` of every trade against a fresh daemon: trades acknowledged a second from
    /// the process's start to its exit; with `resubmit`, then the same again (every trade a duplicate).
    static func command(file: String, trades: Int, batch: Int, window: Int, config: String, data: String, binary: String,
                        resubmit: Bool = false) throws -> (rate: Double, cpuMicrosPerTrade: Double, pathCPUMicrosPerTrade: Double, resubmittedRate: Double?) {
        let daemon = try Daemon(config: config, data: data)
        // The command is the only child reaped while it runs (the daemon is reaped after): the children's usage
        // grows by its own.
        func childrenCPUMicros() -> Double {
            var u = rusage()
            getrusage(RUSAGE_CHILDREN.rawValue, &u)
            return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e6 + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec)
        }
        /// One run of the command: its seconds and CPU (µs), and the daemon's CPU meanwhile.
        func run() throws -> (seconds: Double, cpu: Double, daemonCPU: Double) {
            let cpu0 = childrenCPUMicros(), daemon0 = daemon.cpuMicros
            let t0 = tw_monotonic_ns()
            let submit = try ChildProcess(binary, ["trade", "submit", "--file", file, "--data", data, "--connect", daemon.tradeEndpoint,
                                                   "--batch", "\(batch)", "--window", "\(window)"])
            guard let status = submit.wait(seconds: 600) else { submit.kill9(); throw BenchError.failed("trade submit did not finish in 600 s") }
            let seconds = Double(tw_monotonic_ns() - t0) / 1e9
            let cpu = childrenCPUMicros() - cpu0, daemonCPU = daemon.cpuMicros - daemon0
            let out = submit.stdout
            var acks = 0
            for line in out.split(separator: "\n") where line.hasPrefix(#"{"id":"#) && line.contains(#"","seq":"#) { acks += 1 }
            guard status == 0, acks == trades else {
                throw BenchError.failed("trade submit exited \(status) with \(acks) of \(trades) acknowledged: \(submit.stderr.suffix(2000)) \(out.suffix(500))")
            }
            return (seconds, cpu, daemonCPU)
        }
        let first = try run()
        let again = resubmit ? try run() : nil
        return (Double(trades) / first.seconds, first.cpu / Double(trades), (first.cpu + first.daemonCPU) / Double(trades),
                again.map { Double(trades) / $0.seconds })
    }

    /// One DEALER in this process with the command's shape, from SUBMIT frames encoded before the clock starts.
    static func preEncoded(trades: Int, batch: Int, window: Int, config: String, data: String) throws -> (rate: Double, pathCPUMicrosPerTrade: Double) {
        let daemon = try Daemon(config: config, data: data)
        let context = ZMQContext()
        let socket = try daemon.dealer(context)
        defer { socket.close() }
        // Packed as `TradeClient` packs a batch.
        let messages = stride(from: 0, to: trades, by: batch).map { start in
            let frames = (start..<min(trades, start + batch)).map { TradeWire.encodeRequest(request($0)) }
            return (count: frames.count, frame: frames.count == 1 ? frames[0] : TradeWire.pack(TradeWire.submitPacked, frames))
        }
        var sent = 0, acked = 0, next = 0
        let t0 = tw_monotonic_ns(), cpu0 = E2EBench.processCPUNanos(), daemon0 = daemon.cpuMicros
        while acked < trades {
            while next < messages.count && sent - acked + messages[next].count <= window {
                try socket.send(messages[next].frame)
                sent += messages[next].count
                next += 1
            }
            guard try socket.waitReadable(timeoutMs: 10_000) else {
                throw BenchError.failed("no reply within 10 s with \(sent - acked) trades in flight")
            }
            while var frames = try socket.receiveMultipart(dontWait: true) {
                if frames.count == 1 && frames[0].first == TradeWire.repliesPacked {
                    frames = try TradeWire.unpack(frames[0], type: TradeWire.repliesPacked)
                }
                for f in frames where f.first != TradeWire.ack {
                    throw BenchError.failed("a trade was not acknowledged: \((try? TradeWire.decodeReply(f)).map { "\($0)" } ?? "\(f)")")
                }
                acked += frames.count
            }
        }
        let cpu = Double(E2EBench.processCPUNanos() - cpu0) / 1e3 + daemon.cpuMicros - daemon0
        return (Double(trades) * 1e9 / Double(tw_monotonic_ns() - t0), cpu / Double(trades))
    }
}
