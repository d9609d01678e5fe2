import CTickwireSys
#if canImport(Glibc)
import Glibc
#endif

/// An owned, non-blocking IPv4 TCP socket; closed when this goes away. The corresponding C functions are
/// `socket`, `bind`, `listen`, `accept4`, `connect`, `recv`, `send` and `poll`.
public final class TCPSocket: @unchecked Sendable {  // only the descriptor, immutable
    public let fd: Int32

    init(fd: Int32) { self.fd = fd }

    deinit { close(fd) }

    static func make() throws(FeedConfigError) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw FeedConfigError("socket(): \(String(cString: strerror(errno)))") }
        _ = tw_set_nonblocking(fd, 1)
        return fd
    }

    /// A listening socket on `endpoint` (port 0: the system picks one; see `localEndpoint`).
    public static func listening(on endpoint: UDPEndpoint, backlog: Int32 = 64) throws(FeedConfigError) -> TCPSocket {
        let s = TCPSocket(fd: try make())
        var one: Int32 = 1
        setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var sa = endpoint.sockaddr
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s.fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 { throw FeedConfigError("cannot bind tcp://\(endpoint.host):\(endpoint.port): \(String(cString: strerror(errno)))") }
        if listen(s.fd, backlog) != 0 { throw FeedConfigError("cannot listen on tcp://\(endpoint.host):\(endpoint.port): \(String(cString: strerror(errno)))") }
        return s
    }

    /// Starts connecting to `endpoint` without waiting; `poll` for writability, then `connectError`.
    public static func connecting(to endpoint: UDPEndpoint) throws(FeedConfigError) -> TCPSocket {
        let s = TCPSocket(fd: try make())
        var one: Int32 = 1
        setsockopt(s.fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var sa = endpoint.sockaddr
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s.fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 && errno != EINPROGRESS {
            throw FeedConfigError("cannot connect to tcp://\(endpoint.host):\(endpoint.port): \(String(cString: strerror(errno)))")
        }
        return s
    }

    /// After a non-blocking connect became writable: 0 when connected, else the errno.
    public var connectError: Int32 {
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 { return errno }
        return err
    }

    /// A waiting connection, or nil.
    public func accept() -> TCPSocket? {
        // accept4 is a GNU extension Glibc's module does not export: accept, then make it non-blocking.
        let c = Glibc.accept(fd, nil, nil)
        if c < 0 { return nil }
        _ = tw_set_nonblocking(c, 1)
        var one: Int32 = 1
        setsockopt(c, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return TCPSocket(fd: c)
    }

    public var localEndpoint: UDPEndpoint? {
        var sa = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return rc == 0 ? UDPEndpoint(address: sa.sin_addr.s_addr, port: UInt16(bigEndian: sa.sin_port)) : nil
    }

    public enum ReadResult { case data(Int), wouldBlock, closed }

    /// Reads what is waiting into `buffer`.
    public func read(into buffer: UnsafeMutableRawBufferPointer) -> ReadResult {
        let n = recv(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT))
        if n > 0 { return .data(n) }
        if n == 0 { return .closed }
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? .wouldBlock : .closed
    }

    /// Writes what the kernel takes now; returns the bytes taken, or nil when the connection is broken.
    public func write(_ bytes: UnsafeRawBufferPointer) -> Int? {
        if bytes.isEmpty { return 0 }
        let n = send(fd, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
        if n >= 0 { return n }
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : nil
    }

    /// Waits until one of `fds` has one of its events or `timeoutMillis` passes; returns the events seen.
    public static func poll(_ fds: [(fd: Int32, events: Int16)], timeoutMillis: Int32) -> [Int16] {
        var p = fds.map { pollfd(fd: $0.fd, events: $0.events, revents: 0) }
        let rc = Glibc.poll(&p, nfds_t(p.count), timeoutMillis)
        if rc <= 0 { return Array(repeating: 0, count: fds.count) }
        return p.map(\.revents)
    }
}
