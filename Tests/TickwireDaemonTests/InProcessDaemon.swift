import Logging
import TickwireDaemon
import TickwireTestSupport

/// A `Daemon` in the test's own process, not started: its publisher on a free loopback port, metrics and trades
/// on ephemeral ones, its data in a fresh temporary directory, logging errors only. `configure` sets the rest.
func inProcessDaemon(_ name: String, _ configure: (inout DaemonConfig) -> Void = { _ in }) -> Daemon {
    var c = DaemonConfig()
    c.publishEndpoint = "tcp://127.0.0.1:\(freePort())"
    c.metricsEndpoint = "127.0.0.1:0"
    c.tradeEndpoint = "tcp://127.0.0.1:*"
    c.dataDirectory = temporaryDirectory(name)
    configure(&c)
    var logger = Logger(label: "test")
    logger.logLevel = .error
    return Daemon(config: c, logger: logger)
}
