import Foundation
import Prometheus
import TickwireCore
import TickwireRing

/// Why the metrics endpoint could not be opened.
public struct MetricsServerError: Error, CustomStringConvertible {
    public let endpoint: String
    public let reason: String
    public var description: String { "\(endpoint): \(reason)" }
}

/// A small HTTP/1.0 server for Prometheus scrapes and `tickwire stats`: GET only, one request per connection,
/// served on its own thread. Scrapes come a few times a minute, so simplicity beats throughput here.
final class MetricsServer: @unchecked Sendable {
    let fd: Int32
    let endpoint: String
    /// The port actually bound (useful when 0 was asked for).
    let port: UInt16
    private let handler: @Sendable (String) -> String?

    /// - Parameters:
    ///   - endpoint: `HOST:PORT` (an IPv4 address; `localhost` means 127.0.0.1).
    ///   - handler: the body for a path, or nil for 404.
    init(endpoint: String, handler: @escaping @Sendable (String) -> String?) throws(MetricsServerError) {
        self.endpoint = endpoint
        self.handler = handler
        func fail(_ r: String) -> MetricsServerError { MetricsServerError(endpoint: endpoint, reason: r) }
        let parts = endpoint.split(separator: ":")
        guard parts.count == 2, let port = UInt16(parts[1]) else { throw fail("expected HOST:PORT such as 127.0.0.1:9464") }
        let host = parts[0] == "localhost" ? "127.0.0.1" : String(parts[0])
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else { throw fail("'\(host)' is not an IPv4 address") }
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw fail(String(cString: strerror(errno))) }
        var one: Int32 = 1
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 || listen(s, 16) != 0 {
            let why = errno == EADDRINUSE ? "address already in use (is another 'tickwire run' going?)" : String(cString: strerror(errno))
            close(s)
            throw fail(why)
        }
        var bound = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
        self.port = UInt16(bigEndian: bound.sin_port)
        fd = s
    }

    deinit { close(fd) }

    /// Serves until `stop` is raised (checked every 200 ms).
    func run(stop: StopSignal) {
        while !stop.isRaised {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 200) > 0 else { continue }
            let c = accept(fd, nil, nil)
            if c < 0 { continue }
            serve(c)
            close(c)
        }
    }

    private func serve(_ c: Int32) {
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var request = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 4096)
        while request.count < 16_384 {
            let n = read(c, &buf, buf.count)
            if n <= 0 { break }
            request.append(contentsOf: buf[0..<n])
            if request.count >= 4, request.suffix(4) == [13, 10, 13, 10] { break }
            if request.contains(10) && request.count > 2 && String(decoding: request, as: UTF8.self).contains("\r\n\r\n") { break }
        }
        let line = String(decoding: request.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self).split(separator: " ")
        let response: String
        if line.count >= 2, line[0] == "GET" {
            let path = String(line[1].split(separator: "?").first ?? "")
            if let body = handler(path) {
                response = "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
            } else {
                response = "HTTP/1.0 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n"
            }
        } else {
            response = "HTTP/1.0 405 Method Not Allowed\r\nContent-Length: 9\r\nConnection: close\r\n\r\nGET only\n"
        }
        var bytes = Array(response.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { write(c, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes = bytes.dropFirst(n)
        }
    }
}

/// The daemon's metrics in a swift-prometheus registry, exposed as the Prometheus text format.
///
/// The hot paths count in their own atomics (a registry counter per event would cost a lock); at each scrape
/// the snapshot is copied into the registry's counters and gauges, which also hold whatever other code reports
/// through swift-metrics once `tickwire run` bootstraps `MetricsSystem` with this registry. The latency
/// histograms are lock-free power-of-two histograms of our own, appended in the same text format.
public final class MetricsExport: @unchecked Sendable {
    public let registry: PrometheusCollectorRegistry
    private var counters: [String: Counter] = [:]
    private var gauges: [String: Gauge] = [:]
    private let lock = NSLock()

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) { self.registry = registry }

    private func counter(_ name: String, _ labels: [(String, String)], _ value: UInt64, _ help: String) {
        let key = name + labels.map { "|\($0.0)=\($0.1)" }.joined()
        let c = counters[key] ?? registry.makeCounter(name: name, labels: labels, help: help)
        counters[key] = c
        c.reset()
        c.increment(by: Int64(clamping: value))
    }

    private func gauge(_ name: String, _ labels: [(String, String)], _ value: Double, _ help: String) {
        let key = name + labels.map { "|\($0.0)=\($0.1)" }.joined()
        let g = gauges[key] ?? registry.makeGauge(name: name, labels: labels, help: help)
        gauges[key] = g
        g.set(to: value)
    }

    /// Copies a snapshot into the registry and returns the whole exposition.
    public func render(_ s: DaemonStatistics) -> String {
        lock.lock()
        defer { lock.unlock() }
        gauge("tickwire_uptime_seconds", [], s.uptimeSeconds, "Seconds since the daemon started.")
        counter("tickwire_ring_published_total", [], s.published, "Events published into the broadcast ring.")
        gauge("tickwire_ring_capacity", [], Double(s.ringCapacity), "Slots in the broadcast ring.")
        gauge("tickwire_ring_occupancy_ratio", [], s.ringOccupancy, "Fraction of the ring the slowest blocking consumer has yet to read.")
        gauge("tickwire_subjects", [], Double(s.subjects), "Distinct subjects seen.")
        for (name, values) in s.sources {
            for (c, value) in values {
                counter("tickwire_source_total", [("source", name), ("counter", c)], value, "Per-source counters (events, errors, gaps...).")
            }
        }
        for (name, c) in s.consumers {
            let l = [("subscription", name)]
            counter("tickwire_subscription_delivered_total", l, c.delivered, "Events handed to the subscription.")
            counter("tickwire_subscription_dropped_total", l, c.dropped, "Events the subscription lost by being lapped.")
            gauge("tickwire_subscription_lag", l, Double(c.lag), "Events published but not yet consumed.")
            counter("tickwire_subscription_resyncs_total", l, c.resyncs, "Resynchronisations from the last-value cache.")
            counter("tickwire_subscription_stalls_total", l, c.stalls, "Times the producer waited for this blocking subscription.")
        }
        for c in s.counters { counter(c.name, c.labels.0.isEmpty ? [] : [c.labels], c.value, c.help) }
        for g in s.gauges { gauge(g.name, [], g.value, g.help) }
        var out = registry.emitToString()
        for h in s.histograms { out += h.histogram.prometheus(name: h.name, help: h.help, labels: h.labels) }
        return out
    }
}
