import ArgumentParser
import Foundation
import TickwireDaemon

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a running daemon's counters: sources, ring, and every subscription's delivered, dropped, lag, resyncs.")

    @Option(help: "The daemon's metrics endpoint, HOST:PORT.") var metrics = "127.0.0.1:9464"
    @Flag(help: "Print the raw Prometheus text.") var raw = false

    func run() throws {
        let body: String
        do { body = try httpGet(endpoint: metrics, path: "/metrics") } catch {
            throw ValidationError("cannot read stats from http://\(metrics)/metrics: \(error) (is 'tickwire run' going?)")
        }
        if raw { print(body, terminator: ""); return }
        print(StatsTable.render(prometheusText: body))
    }
}

struct HTTPError: Error, CustomStringConvertible { let description: String }

/// A minimal HTTP/1.0 GET over a loopback socket; returns the body of a 200 response.
func httpGet(endpoint: String, path: String) throws -> String {
    let parts = endpoint.split(separator: ":")
    guard parts.count == 2, let port = UInt16(parts[1]) else { throw HTTPError(description: "expected HOST:PORT") }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = port.bigEndian
    let host = parts[0] == "localhost" ? "127.0.0.1" : String(parts[0])
    guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else { throw HTTPError(description: "'\(host)' is not an IPv4 address") }
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard rc == 0 else { throw HTTPError(description: String(cString: strerror(errno))) }
    var req = Array("GET \(path) HTTP/1.0\r\nHost: \(endpoint)\r\n\r\n".utf8)
    _ = write(fd, &req, req.count)
    var response = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 65_536)
    while true {
        let n = read(fd, &buf, buf.count)
        if n <= 0 { break }
        response.append(contentsOf: buf[0..<n])
    }
    let text = String(decoding: response, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n") else { throw HTTPError(description: "no HTTP response") }
    let status = text[..<split.lowerBound].split(separator: "\r\n").first ?? ""
    guard status.contains(" 200 ") else { throw HTTPError(description: String(status)) }
    return String(text[split.upperBound...])
}
