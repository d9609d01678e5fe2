import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A real `nats-server` cluster on loopback for tests: `size` processes with JetStream, each with its own store
/// folder, client port, route port and monitoring port, routed to each other. Servers can be killed and started
/// again (same ports, same store), the way a machine dies and comes back.
public final class NATSCluster: @unchecked Sendable {
    public struct Server {
        public let name: String
        public let clientPort: Int
        public let clusterPort: Int
        public let monitorPort: Int
        public let storeDir: String
        public let configPath: String
        public var url: String { "nats://127.0.0.1:\(clientPort)" }
    }

    public private(set) var servers: [Server] = []
    public let directory: String
    public let clusterName: String
    private var processes: [ChildProcess?] = []

    /// The `nats-server` executable (Debian installs it in /usr/sbin).
    public static let executable: String? = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]
        .first { FileManager.default.isExecutableFile(atPath: $0) }

    /// All client URLs, comma-separated, as a user passes them to `--nats`.
    public var urls: String { servers.map(\.url).joined(separator: ",") }

    /// Writes the configurations and starts every server; waits until each has its routes and, with JetStream,
    /// until the meta group has a leader.
    public init(size: Int = 3, jetStream: Bool = true, name: String = "nats") throws {
        guard Self.executable != nil else { throw SpawnError(executable: "nats-server", message: "not installed (Tools/setup.sh installs it)") }
        Self.endStrays()
        directory = temporaryDirectory(name)
        // A name of its own: a server left behind by a crashed run, still dialling its dead peers' route ports,
        // must never join this cluster when one of those ports is handed out again.
        let clusterName = "tw-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        self.clusterName = clusterName
        // A server that cannot bind a port it was given (another test's process took it between `freePort` and
        // the server's start) exits, and its peers dial its route port in vain: the cluster is set up again on
        // other ports, up to three times.
        var attempt = 0
        while true {
            attempt += 1
            try configure(size: size, jetStream: jetStream)
            do {
                for i in 0..<size { try start(i) }
                for i in 0..<size { try waitReady(i, routes: size - 1) }
                break
            } catch where attempt < 3 && servers.indices.contains(where: { !isRunning($0) }) {
                for i in servers.indices { kill(i) }
            }
        }
        if jetStream && size > 1 { try waitForJetStreamLeader() }
    }

    /// Picks `size` servers' ports (all distinct), writes their configurations.
    private func configure(size: Int, jetStream: Bool) throws {
        var servers: [Server] = []
        var used = Set<Int>()
        func port() -> Int {
            var p = freePort()
            while !used.insert(p).inserted { p = freePort() }
            return p
        }
        for i in 0..<size {
            let dir = directory + "/n\(i)"
            try? FileManager.default.removeItem(atPath: dir)   // what an earlier attempt's server wrote
            try FileManager.default.createDirectory(atPath: dir + "/store", withIntermediateDirectories: true)
            servers.append(Server(name: "\(clusterName)-n\(i)", clientPort: port(), clusterPort: port(), monitorPort: port(),
                                  storeDir: dir + "/store", configPath: dir + "/server.conf"))
        }
        for s in servers {
            let routes = servers.filter { $0.name != s.name }.map { "nats-route://127.0.0.1:\($0.clusterPort)" }
            var conf = """
            server_name: \(s.name)
            listen: 127.0.0.1:\(s.clientPort)
            http: 127.0.0.1:\(s.monitorPort)
            max_payload: 1MB

            """
            if jetStream {
                conf += "jetstream { store_dir: \"\(s.storeDir)\", max_memory_store: 256MB, max_file_store: 2GB }\n"
            }
            if size > 1 {
                conf += """
                cluster {
                  name: \(clusterName)
                  listen: 127.0.0.1:\(s.clusterPort)
                  routes: [\(routes.joined(separator: ", "))]
                }

                """
            }
            try conf.write(toFile: s.configPath, atomically: true, encoding: .utf8)
        }
        self.servers = servers
        processes = Array(repeating: nil, count: size)
    }

    /// Ends `nats-server` processes that a test process started and did not stop before it died (their
    /// configuration lives under `tickwire-test-…-<pid>-…`, and that pid is gone). Nothing else is touched.
    static func endStrays() {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return }
        for entry in entries {
            guard let pid = Int32(entry),
                  let raw = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { continue }
            let args = String(decoding: raw, as: UTF8.self).split(separator: "\0")
            guard args.first?.hasSuffix("nats-server") == true,
                  let conf = args.first(where: { $0.contains("tickwire-test-") && $0.hasSuffix("server.conf") }) else { continue }
            // …/tickwire-test-NAME-PID-RANDOM/nI/server.conf
            let folder = conf.split(separator: "/").first { $0.hasPrefix("tickwire-test-") } ?? ""
            let parts = folder.split(separator: "-")
            guard parts.count >= 2, let owner = Int32(parts[parts.count - 2]), owner != getpid(), Glibc.kill(owner, 0) != 0 else { continue }
            Glibc.kill(pid, SIGKILL)
        }
    }

    /// Starts server `i` (again).
    public func start(_ i: Int) throws {
        processes[i] = try ChildProcess(Self.executable!, ["-c", servers[i].configPath])
    }

    /// kill -9 of server `i`, as if its machine lost power.
    public func kill(_ i: Int) {
        processes[i]?.kill9()
        processes[i] = nil
    }

    public func isRunning(_ i: Int) -> Bool { processes[i]?.isRunning ?? false }

    /// Sends `signal` to server `i` (SIGSTOP and SIGCONT: a server cut off for a while and back, its state kept).
    public func signal(_ i: Int, _ signal: Int32) { processes[i]?.signal(signal) }

    /// The running servers' process ids (for a benchmark to read their CPU time).
    public var pids: [pid_t] { processes.compactMap { $0?.pid } }

    /// Waits until server `i` accepts clients and has `routes` routes to others.
    public func waitReady(_ i: Int, routes: Int, seconds: Double = 30) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let json = monitor(i, "routez"), let n = json["num_routes"] as? Int, n >= routes { return }
            usleep(50_000)
        }
        throw SpawnError(executable: "nats-server \(servers[i].name)",
                         message: "not ready with \(routes) routes after \(seconds) s: \(processes[i]?.stderr.suffix(2000) ?? "")")
    }

    /// Waits until the JetStream meta group has elected a leader (streams can be created from then on).
    public func waitForJetStreamLeader(seconds: Double = 60) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            for i in servers.indices where isRunning(i) {
                if let json = monitor(i, "jsz"), let meta = json["meta_cluster"] as? [String: Any],
                   let leader = meta["leader"] as? String, !leader.isEmpty { return }
            }
            usleep(100_000)
        }
        throw SpawnError(executable: "nats-server", message: "no JetStream meta leader after \(seconds) s")
    }

    /// One of the monitoring endpoint's JSON documents (`varz`, `routez`, `jsz`, `connz`, `subsz`), nil when the
    /// server does not answer.
    public func monitor(_ i: Int, _ path: String) -> [String: Any]? {
        guard isRunning(i) else { return nil }
        guard let data = httpGet(port: servers[i].monitorPort, path: "/" + path) else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }

    deinit {
        for i in servers.indices { kill(i) }
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// Runs `body` until it stops throwing or `seconds` pass (then throws its last error): for a cluster that is
/// still electing its leaders, or a stream that is still moving.
public func retrying<T>(seconds: Double = 30, _ body: () throws -> T) throws -> T {
    let deadline = Date().addingTimeInterval(seconds)
    while true {
        do { return try body() } catch {
            if Date() > deadline { throw error }
            usleep(250_000)
        }
    }
}

/// A plain HTTP/1.0 GET on loopback with a 2 s bound, returning the body (for monitoring endpoints).
public func httpGet(port: Int, path: String) -> Data? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var tv = timeval(tv_sec: 2, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    guard withLoopback(port: port, { connect(fd, $0, $1) }) == 0 else { return nil }
    let request = Array("GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".utf8)
    guard send(fd, request, request.count, 0) == request.count else { return nil }
    var response = Data()
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n <= 0 { break }
        response.append(contentsOf: buffer[0..<n])
    }
    guard let split = response.range(of: Data("\r\n\r\n".utf8)) else { return nil }
    return response.subdata(in: split.upperBound..<response.count)
}
