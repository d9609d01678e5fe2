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

/// A minimal HTTP/1.1 GET over a loopback socket; returns the body of a 200 response.
///
/// Bounded in time: connecting, sending and each read give up after `timeout` seconds (SO_SNDTIMEO also bounds
/// connect on Linux), and the whole exchange after twice that. The request says `Connection: close` and the
/// body ends at its Content-Length, so a server that keeps connections alive cannot leave us waiting for EOF.
func httpGet(endpoint: String, path: String, timeout: Double = 5) throws -> String {
    let parts = endpoint.split(separator: ":")
    guard parts.count == 2, let port = UInt16(parts[1]) else { throw HTTPError(description: "expected HOST:PORT") }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = port.bigEndian
    let host = parts[0] == "localhost" ? "127.0.0.1" : String(parts[0])
    guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else { throw HTTPError(description: "'\(host)' is not an IPv4 address") }
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw HTTPError(description: String(cString: strerror(errno))) }
    defer { close(fd) }
    var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1e6))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    let deadline = Date().addingTimeInterval(2 * timeout)
    let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard rc == 0 else {
        let e = errno
        throw HTTPError(description: e == EINPROGRESS || e == EAGAIN ? "no connection within \(timeout) s" : String(cString: strerror(e)))
    }
    var req = Array("GET \(path) HTTP/1.1\r\nHost: \(endpoint)\r\nConnection: close\r\n\r\n".utf8)
    guard write(fd, &req, req.count) == req.count else { throw HTTPError(description: "could not send the request") }
    var response = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 65_536)
    var expected: Int?  // head + body length, once the head is in
    while expected.map({ response.count < $0 }) ?? true {
        guard Date() < deadline else { throw HTTPError(description: "no complete response within \(2 * timeout) s") }
        let n = read(fd, &buf, buf.count)
        if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { throw HTTPError(description: "no response within \(timeout) s") }
        if n <= 0 { break }
        response.append(contentsOf: buf[0..<n])
        if expected == nil, let end = headEnd(response) {
            let head = String(decoding: response[..<end], as: UTF8.self).lowercased()
            if let line = head.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
               let length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) {
                expected = end + length
            }
        }
    }
    guard let end = headEnd(response) else { throw HTTPError(description: "no HTTP response") }
    let head = String(decoding: response[..<(end - 4)], as: UTF8.self)
    let status = head.split(separator: "\r\n").first ?? ""
    guard status.contains(" 200 ") else { throw HTTPError(description: String(status)) }
    return String(decoding: response[end...], as: UTF8.self)
}

/// The offset just past the blank line that ends an HTTP head, if it has arrived.
private func headEnd(_ bytes: [UInt8]) -> Int? {
    guard bytes.count >= 4 else { return nil }
    for i in 0...(bytes.count - 4) where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
        return i + 4
    }
    return nil
}
