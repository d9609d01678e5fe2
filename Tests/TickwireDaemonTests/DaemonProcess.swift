import Foundation
import TickwireTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A real `tickwire run` on free loopback ports and its own data directory.
final class DaemonProcess {
    let pubPort: Int
    let metricsPort = freePort()
    let tradePort = freePort()
    let data: String
    let child: ChildProcess
    var pub: String { "tcp://127.0.0.1:\(pubPort)" }
    var metrics: String { "127.0.0.1:\(metricsPort)" }

    init(_ extra: [String] = [], data: String? = nil, pubPort: Int = freePort()) throws {
        self.pubPort = pubPort
        self.data = data ?? temporaryDirectory("daemon")
        child = try ChildProcess(tickwireBinary, ["run", "--pub", "tcp://127.0.0.1:\(pubPort)", "--metrics", "127.0.0.1:\(metricsPort)",
                                                  "--trades", "tcp://127.0.0.1:\(tradePort)",
                                                  "--data", self.data] + extra)
        guard child.waitForOutput("tickwire running", seconds: 30) else {
            throw DaemonStartError(stderr: child.stderr)
        }
    }

    /// Runs `tickwire ARGS…` to completion (bounded) and returns (status, stdout, stderr).
    static func tickwire(_ args: [String], seconds: Double = 30) throws -> (status: Int32, stdout: String, stderr: String) {
        let c = try ChildProcess(tickwireBinary, args)
        guard let status = c.wait(seconds: seconds) else {
            c.signal(SIGKILL)
            return (-1, c.stdout, c.stderr + "\n(timed out after \(seconds) s)")
        }
        return (status, c.stdout, c.stderr)
    }

    deinit {
        child.signal(SIGTERM)
        if child.wait(seconds: 10) == nil { child.signal(SIGKILL) }
        try? FileManager.default.removeItem(atPath: data)
    }
}

struct DaemonStartError: Error, CustomStringConvertible {
    let stderr: String
    var description: String { "daemon did not start:\n\(stderr)" }
}
