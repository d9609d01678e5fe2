import Foundation
import Testing
@testable import TickwireDaemon
import TickwireTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The metrics endpoint under clients that misbehave (issue 13, item 5): idle connections, a slow sender, an
/// oversized request, many scrapes at once. Real TCP on 127.0.0.1; every wait is bounded.
@Suite struct MetricsServerTests {
    /// A server on a free port with a trivial handler: /metrics answers, anything else is 404.
    private func server(_ limits: MetricsServer.Limits = .init()) throws -> MetricsServer {
        try MetricsServer(endpoint: "127.0.0.1:0", limits: limits) { path in
            path == "/metrics" ? "tickwire_test_total 1\n" : nil
        }
    }

    @Test func servesTheHandlerAnd404AndGetOnly() throws {
        let s = try server()
        defer { s.stop() }
        #expect(s.port != 0)
        let ok = try httpRequest(port: s.port, "GET /metrics?x=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        #expect(ok.status == 200)
        #expect(ok.body == "tickwire_test_total 1\n")
        #expect(ok.head.lowercased().contains("content-type: text/plain; version=0.0.4"))
        #expect(try httpRequest(port: s.port, "GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").status == 404)
        #expect(try httpRequest(port: s.port, "POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").status == 405)
        // An HTTP/1.0 client without Connection: close (the old `tickwire stats`) gets a complete, sized answer.
        let old = try httpRequest(port: s.port, "GET /metrics HTTP/1.0\r\n\r\n")
        #expect(old.status == 200 && old.body == "tickwire_test_total 1\n")
    }

    @Test func idleConnectionsDoNotDelayAScrape() throws {
        let s = try server()
        defer { s.stop() }
        let idle = try (0..<10).map { _ in try connectTCP(port: s.port) }
        defer { idle.forEach { close($0) } }
        usleep(100_000)
        let start = Date()
        let r = try httpRequest(port: s.port, "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        let took = Date().timeIntervalSince(start)
        #expect(r.status == 200)
        #expect(took < 2, "a scrape with 10 idle connections open took \(took) s")
    }

    @Test func aSlowSenderDoesNotBlockOthersAndIsCut() throws {
        var limits = MetricsServer.Limits()
        limits.idleTimeout = .seconds(1)
        let s = try server(limits)
        defer { s.stop() }
        let slow = try connectTCP(port: s.port)
        defer { close(slow) }
        let head = Array("GET /metrics HTTP/1.1\r\nHost: t\r\nX-Slow: ".utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: 10_000)
        let start = Date()
        var sent = 0, cutAfter: Double?, scraped: Double?
        // One byte every 20 ms, never finishing the head; a scrape from another client meanwhile.
        while Date().timeIntervalSince(start) < 10, cutAfter == nil, sent < head.count {
            if send(slow, [head[sent]], 1, Int32(MSG_NOSIGNAL)) != 1 { cutAfter = Date().timeIntervalSince(start); break }
            sent += 1
            var p = pollfd(fd: slow, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 20) > 0 {
                var b = [UInt8](repeating: 0, count: 1024)
                if read(slow, &b, b.count) <= 0 { cutAfter = Date().timeIntervalSince(start) }
            }
            if scraped == nil, sent == 10 {
                let t = Date()
                #expect(try httpRequest(port: s.port, "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").status == 200)
                scraped = Date().timeIntervalSince(t)
            }
        }
        #expect((scraped ?? 99) < 2, "a scrape beside a slow sender took \(scraped ?? -1) s")
        #expect(cutAfter != nil, "the slow sender was never cut (\(sent) bytes sent)")
        #expect((cutAfter ?? 99) < 5, "the slow sender was cut after \(cutAfter ?? -1) s")
    }

    @Test func anOversizedRequestIsRefusedAndTheServerGoesOn() throws {
        let s = try server()
        defer { s.stop() }
        let c = try connectTCP(port: s.port)
        defer { close(c) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        // 1 MiB of headers; the server may close before all of it is sent, which ends the sending.
        let request = Array("GET /metrics HTTP/1.1\r\nHost: t\r\n".utf8)
            + Array(repeating: Array("X-Pad: \(String(repeating: "a", count: 1000))\r\n".utf8), count: 1024).flatMap { $0 }
            + Array("\r\n".utf8)
        var sent = 0
        while sent < request.count {
            let n = request[sent...].withUnsafeBytes { send(c, $0.baseAddress, min($0.count, 65_536), Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }
            sent += n
        }
        var response = [UInt8](), buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(c, &buf, buf.count)
            if n <= 0 { break }
            response.append(contentsOf: buf[0..<n])
        }
        let text = String(decoding: response, as: UTF8.self)
        // Refused: answered 400, or cut (reset) before the answer could be read; never served.
        #expect(text.isEmpty || text.hasPrefix("HTTP/1.1 400"), "\(text.prefix(200))")
        #expect(!text.contains(" 200 "))
        #expect(try httpRequest(port: s.port, "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").status == 200)
    }

    @Test func aRequestWithABodyIsAnsweredThenItsConnectionClosed() throws {
        let s = try server()
        defer { s.stop() }
        let c = try connectTCP(port: s.port)
        defer { close(c) }
        // Declares a megabyte of body and sends a little of it: answered at once, then cut rather than drained.
        let req = Array("GET /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\nabc".utf8)
        #expect(send(c, req, req.count, Int32(MSG_NOSIGNAL)) == req.count)
        let start = Date()
        #expect(try readResponse(c).status == 200)
        var b = [UInt8](repeating: 0, count: 16)
        #expect(read(c, &b, b.count) <= 0)  // closed by the server (SO_RCVTIMEO of 5 s set by readResponse)
        #expect(Date().timeIntervalSince(start) < 3)
        #expect(try httpRequest(port: s.port, "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").status == 200)
    }

    @Test func fiftyConcurrentScrapesAreAllAnswered() throws {
        let s = try server()
        defer { s.stop() }
        let start = Date()
        // Fifty connections, each with its request sent, before any response is read.
        let fds = try (0..<50).map { _ in
            let fd = try connectTCP(port: s.port)
            let req = Array("GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".utf8)
            #expect(send(fd, req, req.count, Int32(MSG_NOSIGNAL)) == req.count)
            return fd
        }
        defer { fds.forEach { close($0) } }
        var answered = 0
        for fd in fds where try readResponse(fd).status == 200 { answered += 1 }
        #expect(answered == 50)
        #expect(Date().timeIntervalSince(start) < 10)
    }

    @Test func stopIsPromptWithClientsStillConnected() throws {
        let s = try server()
        let port = s.port
        let idle = try (0..<5).map { _ in try connectTCP(port: port) }
        defer { idle.forEach { close($0) } }
        let half = try connectTCP(port: port)
        defer { close(half) }
        _ = send(half, "GET /metrics HTTP/1.1\r\nHo", 25, Int32(MSG_NOSIGNAL))
        usleep(100_000)
        let start = Date()
        s.stop()
        #expect(Date().timeIntervalSince(start) < 3)
        #expect(throws: (any Error).self) { try connectTCP(port: port) }
        s.stop()  // a second stop is harmless
    }

    @Test func aBusyEndpointFailsClearly() throws {
        let s = try server()
        defer { s.stop() }
        let endpoint = "127.0.0.1:\(s.port)"
        do {
            let second = try MetricsServer(endpoint: endpoint) { _ in nil }
            second.stop()
            Issue.record("a second server bound \(endpoint)")
        } catch {
            #expect(error.endpoint == endpoint)
            #expect(error.description.contains("already in use"), "\(error)")
        }
        #expect(throws: MetricsServerError.self) { _ = try MetricsServer(endpoint: "127.0.0.1", handler: { _ in nil }) }
        // The daemon names the endpoint and refuses to start.
        let r = try DaemonProcess.tickwire(["run", "--pub", "tcp://127.0.0.1:\(freePort())", "--metrics", endpoint,
                                            "--trades", "tcp://127.0.0.1:\(freePort())", "--data", temporaryDirectory("busy-metrics")],
                                           seconds: 15)
        #expect(r.status != 0)
        #expect(r.stderr.contains("metrics \(endpoint)") && r.stderr.contains("already in use"), "\(r.stderr)")
    }

    @Test func statsAnswersPromptlyWithIdleConnectionsOpen() throws {
        let daemon = try DaemonProcess(["--rate", "1000"])
        let idle = try (0..<10).map { _ in try connectTCP(port: UInt16(daemon.metricsPort)) }
        defer { idle.forEach { close($0) } }
        usleep(100_000)
        let start = Date()
        let r = try DaemonProcess.tickwire(["stats", "--metrics", daemon.metrics], seconds: 20)
        let took = Date().timeIntervalSince(start)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("zmq-publisher"))
        #expect(took < 3, "tickwire stats with 10 idle connections open took \(took) s")
        // And the daemon still stops cleanly with them open.
        daemon.child.signal(SIGTERM)
        #expect(daemon.child.wait(seconds: 10) == 0)
        #expect(daemon.child.stderr.contains("tickwire stopped"))
    }
}

private struct TCPError: Error, CustomStringConvertible { let description: String }

/// A connected TCP socket to 127.0.0.1:port (blocking), or a throw.
private func connectTCP(port: UInt16) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TCPError(description: "socket: \(errno)") }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = port.bigEndian
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var tv = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard rc == 0 else {
        let e = errno
        close(fd)
        throw TCPError(description: "connect to \(port): \(String(cString: strerror(e)))")
    }
    return fd
}

/// Sends `request` on a new connection and reads the response (at most 5 s per read).
private func httpRequest(port: UInt16, _ request: String) throws -> (status: Int, head: String, body: String) {
    let fd = try connectTCP(port: port)
    defer { close(fd) }
    let bytes = Array(request.utf8)
    guard send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else { throw TCPError(description: "send") }
    return try readResponse(fd)
}

/// Reads one response: up to the end of its Content-Length body, or EOF; every read bounded by 5 s.
private func readResponse(_ fd: Int32) throws -> (status: Int, head: String, body: String) {
    var tv = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var data = [UInt8](), buf = [UInt8](repeating: 0, count: 65_536)
    var expected: Int?
    while expected.map({ data.count < $0 }) ?? true {
        let n = read(fd, &buf, buf.count)
        if n < 0 { throw TCPError(description: "read: \(String(cString: strerror(errno)))") }
        if n == 0 { break }
        data.append(contentsOf: buf[0..<n])
        let text = String(decoding: data, as: UTF8.self)
        if expected == nil, let split = text.range(of: "\r\n\r\n") {
            let head = text[..<split.lowerBound].lowercased()
            if let line = head.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
               let length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) {
                expected = text[..<split.upperBound].utf8.count + length
            }
        }
    }
    let text = String(decoding: data, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n") else { throw TCPError(description: "no HTTP response: \(text.prefix(100))") }
    let head = String(text[..<split.lowerBound])
    let status = head.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
    return (status, head, String(text[split.upperBound...]))
}
