import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The built `tickwire` executable: next to this test bundle in the build directory.
let tickwireBinary: String = {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
    // The test runner may live inside an .xctest bundle directory.
    while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("tickwire").path) && dir.path != "/" {
        dir = dir.deletingLastPathComponent()
    }
    return dir.appendingPathComponent("tickwire").path
}()

let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// A TCP port nobody listens on right now (bound to 0, read back, closed).
func freePort() -> Int {
    let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(s) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
    return Int(UInt16(bigEndian: addr.sin_port))
}

func temporaryDirectory(_ name: String) -> String {
    let dir = NSTemporaryDirectory() + "tickwire-test-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// A child process with its output captured; killed at deinit if still running.
final class ChildProcess: @unchecked Sendable {
    let process = Process()
    private let out = Pipe(), err = Pipe()
    private let lock = NSLock()
    private var stdoutData = Data(), stderrData = Data()
    private var drained = false

    init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        // The handler reads under the lock, so a read and `drain` never interleave.
        out.fileHandleForReading.readabilityHandler = { [weak self] h in
            guard let self else { return }
            self.lock.withLock { if !self.drained { self.stdoutData.append(h.availableData) } }
        }
        err.fileHandleForReading.readabilityHandler = { [weak self] h in
            guard let self else { return }
            self.lock.withLock { if !self.drained { self.stderrData.append(h.availableData) } }
        }
        try process.run()
    }

    var stdout: String { lock.withLock { String(decoding: stdoutData, as: UTF8.self) } }
    var stderr: String { lock.withLock { String(decoding: stderrData, as: UTF8.self) } }
    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    /// Waits up to `seconds` for exit; returns the exit status, or nil if still running.
    func wait(seconds: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { return nil }
        drain()
        return process.terminationStatus
    }

    /// After exit: stop the asynchronous handlers and read what is left in the pipes, so no output is lost however
    /// far behind the handlers were on a loaded machine.
    private func drain() {
        lock.withLock {
            if drained { return }
            drained = true
            out.fileHandleForReading.readabilityHandler = nil
            err.fileHandleForReading.readabilityHandler = nil
            stdoutData.append(out.fileHandleForReading.readDataToEndOfFile())
            stderrData.append(err.fileHandleForReading.readDataToEndOfFile())
        }
    }

    /// Waits until stderr or stdout contains `text`.
    func waitForOutput(_ text: String, seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if stderr.contains(text) || stdout.contains(text) { return true }
            if !process.isRunning { return stderr.contains(text) || stdout.contains(text) }
            usleep(20_000)
        }
        return false
    }

    func signal(_ sig: Int32) { if process.isRunning { kill(process.processIdentifier, sig) } }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        out.fileHandleForReading.readabilityHandler = nil
        err.fileHandleForReading.readabilityHandler = nil
    }
}

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
