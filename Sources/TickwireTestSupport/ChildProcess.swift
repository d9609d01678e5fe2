import CTickwireSys
import Foundation
import TickwireCore
#if canImport(Glibc)
import Glibc
#endif

/// A real child process for tests, with every wait bounded.
///
/// Spawned with `posix_spawn`: stdin is /dev/null, stdout and stderr go to files (read back on demand), and every
/// other descriptor is closed in the child, so a child never holds another test's sockets or pipes open. Exit is
/// observed with `waitpid` on this pid only. Nothing here waits on a pipe's end of file or a run loop, so a
/// loaded machine makes a test slow, never stuck.
public final class ChildProcess: @unchecked Sendable {
    public let pid: pid_t
    private let outPath: String, errPath: String
    /// The exit status once reaped.
    private let status = Locked<Int32?>(nil)

    /// - Parameters:
    ///   - executable: an absolute path (use `/usr/bin/env` to search PATH).
    ///   - environment: variables added to this process's environment.
    public init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        let base = temporaryDirectory("child")
        outPath = base + "/stdout"
        errPath = base + "/stderr"
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { $1 }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
        var child: pid_t = 0
        let rc = tw_spawn(&child, executable, argv, envp, outPath, errPath)
        guard rc == 0 else { throw SpawnError(executable: executable, message: String(cString: strerror(rc))) }
        pid = child
    }

    public var stdout: String { Self.read(outPath) }
    public var stderr: String { Self.read(errPath) }

    private static func read(_ path: String) -> String {
        String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self)
    }

    /// Reaps the child if it has exited; returns its status: the exit code, or 128 + the signal that ended it.
    private func reap() -> Int32? {
        status.withLock { status in
            if let status { return status }
            var raw: Int32 = 0
            guard waitpid(pid, &raw, WNOHANG) == pid else { return nil }
            let signal = raw & 0x7f
            status = signal == 0 ? (raw >> 8) & 0xff : 128 + signal
            return status
        }
    }

    public var isRunning: Bool { reap() == nil }

    /// Waits up to `seconds` for exit; returns the status (exit code, or 128 + signal), or nil if still running.
    public func wait(seconds: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            if let s = reap() { return s }
            if Date() >= deadline { return nil }
            usleep(5_000)
        }
    }

    /// Waits until stdout or stderr contains `text`, the child exits, or `seconds` pass.
    public func waitForOutput(_ text: String, seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if stderr.contains(text) || stdout.contains(text) { return true }
            if !isRunning { return stderr.contains(text) || stdout.contains(text) }
            usleep(20_000)
        }
        return false
    }

    public func signal(_ sig: Int32) { if isRunning { kill(pid, sig) } }

    /// SIGKILL, then reap (a killed process exits at once unless stuck in the kernel; the wait is bounded anyway).
    public func kill9() {
        signal(SIGKILL)
        _ = wait(seconds: 30)
    }

    deinit {
        kill9()
        try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: outPath).deletingLastPathComponent().path)
    }
}

public struct SpawnError: Error, CustomStringConvertible {
    public let executable: String
    public let message: String
    public var description: String { "cannot start \(executable): \(message)" }
}

/// The built `tickwire` executable: next to the test bundle in the build directory.
public let tickwireBinary: String = {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
    // The test runner may live inside an .xctest bundle directory.
    while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("tickwire").path) && dir.path != "/" {
        dir = dir.deletingLastPathComponent()
    }
    return dir.appendingPathComponent("tickwire").path
}()

/// The package's root directory (this file is Sources/TickwireTestSupport/ChildProcess.swift).
public let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

/// A TCP port nobody listens on right now, for a child process to listen on.
///
/// Drawn at random below the kernel's ephemeral range (`ip_local_port_range`, 32768 and up by default) and checked
/// by binding it: a port `bind(0)` hands out comes from that range, where every outgoing connection of every test
/// process also takes its local port, so one could be taken between this call and the child's bind (a daemon
/// then failed to start on a loaded CI run). Ports below the range are only ever taken by a listener; each is
/// handed out once per process.
public func freePort() -> Int {
    while true {
        let port = Int.random(in: 20_000...32_000)
        guard handedOut.withLock({ $0.insert(port).inserted }) else { continue }
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(s) }
        if withLoopback(port: port, { bind(s, $0, $1) }) == 0 { return port }
    }
}

private let handedOut = Locked(Set<Int>())

/// Calls `body` with 127.0.0.1:`port` as a `sockaddr` and its length (for `bind` and `connect`).
func withLoopback<R>(port: Int, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = UInt16(port).bigEndian
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
}

/// A fresh directory under the system's temporary directory.
public func temporaryDirectory(_ name: String) -> String {
    let dir = NSTemporaryDirectory() + "tickwire-test-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}
