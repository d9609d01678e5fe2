import ArgumentParser
import Foundation
import Logging
import Metrics
import Prometheus
import TickwireDaemon
import TickwireFeeds

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the feed-handler daemon (with no arguments: a simulated market on tcp://127.0.0.1:5556).")

    @Option(help: "A TOML config file; flags given here override it.") var config: String?
    @Option(help: "Data directory.") var data: String?
    @Option(help: "Market data out: the ZeroMQ PUB endpoint.") var pub: String?
    @Option(help: "Trade submission: the ZeroMQ endpoint (CURVE).") var trades: String?
    @Option(help: "Metrics and stats over HTTP: HOST:PORT.") var metrics: String?
    @Option(help: "Simulator events per second (0: as fast as the machine goes).") var rate: Int?
    @Option(help: "Simulator symbols: a count, or a comma-separated list such as AAPL,MSFT.") var symbols: String?
    @Option(name: .customLong("source"), help: "A source: sim (default), itch:PATH, moldudp64:A[,B], tardis-trades:PATH, tardis-quotes:PATH, lobster:PATH, zmq:ENDPOINT[#PATTERN], nats:URL[,URL][#PATTERN]. Repeatable.")
    var sources: [String] = []
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel: String?
    @Option(help: "Also publish every message to core NATS: nats://HOST:PORT[,nats://HOST:PORT…], servers of one cluster.")
    var nats: String?
    @Flag(help: "Do not start when no NATS server answers (without it the daemon starts and keeps trying).")
    var natsRequired = false
    @Option(help: "Answer late joiners' snapshot requests on this ZeroMQ REP endpoint (docs/PROTOCOL.md, \"Snapshot\").")
    var snapshotEndpoint: String?

    func run() throws {
        var c = DaemonConfig()
        if let config {
            let text: String
            do { text = try String(contentsOfFile: config, encoding: .utf8) } catch {
                throw ValidationError("cannot read config file \(config): \(error.localizedDescription)")
            }
            do { c = try DaemonConfig.parse(toml: text) } catch { throw ValidationError("\(config): \(error)") }
        }
        if let data { c.dataDirectory = data }
        if let pub { c.publishEndpoint = try wrap { () throws(ConfigError) in try DaemonConfig.endpoint(pub, key: "--pub") } }
        if let trades { c.tradeEndpoint = try wrap { () throws(ConfigError) in try DaemonConfig.endpoint(trades, key: "--trades") } }
        if let metrics { c.metricsEndpoint = metrics }
        if let rate {
            guard rate >= 0 else { throw ValidationError("--rate must be 0 (as fast as possible) or a positive number of events per second") }
            c.simRate = rate
        }
        if let symbols {
            if let n = Int(symbols) {
                guard n >= 1 else { throw ValidationError("--symbols needs at least 1") }
                c.simSymbolCount = n
            } else {
                c.simSymbols = try symbols.split(separator: ",").map { s in
                    try wrap { () throws(ConfigError) in try DaemonConfig.token(String(s), key: "--symbols") }
                }
            }
        }
        if !sources.isEmpty { c.sources = sources }
        if let nats { c.natsServers = try wrap { () throws(ConfigError) in try DaemonConfig.natsServers(nats, key: "--nats") } }
        if let snapshotEndpoint {
            c.snapshotEndpoint = try wrap { () throws(ConfigError) in try DaemonConfig.endpoint(snapshotEndpoint, key: "--snapshot-endpoint") }
        }
        if natsRequired {
            guard !c.natsServers.isEmpty else { throw ValidationError("--nats-required needs --nats URL or [publish.nats] servers") }
            c.natsRequired = true
        }
        if let logLevel {
            guard let level = Logger.Level(rawValue: logLevel) else { throw ValidationError("--log-level '\(logLevel)' is not a level") }
            c.logLevel = level.rawValue
        }

        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = Logger.Level(rawValue: c.logLevel) ?? .info
            return h
        }
        let logger = Logger(label: "tickwire")
        Daemon.blockTerminationSignals()
        let daemon = Daemon(config: c, logger: logger)
        // Anything in the process that reports through swift-metrics lands in the registry /metrics serves.
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: daemon.metrics.registry))
        do { try daemon.start() } catch {
            // Sources word a missing trading date for every command; `run` has no --date, only the config key.
            let message = "\(error)".replacingOccurrences(of: FeedOptions.howToSetDate, with: FeedOptions.howToSetDateForRun)
            logger.critical("cannot start: \(message)")
            throw ExitCode(2)
        }
        daemon.runUntilSignalled()
    }
}

/// Turns a typed configuration error into the argument parser's validation error.
func wrap<T>(_ body: () throws(ConfigError) -> T) throws -> T {
    do { return try body() } catch { throw ValidationError(error.description) }
}
