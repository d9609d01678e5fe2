#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IPv4 UDP endpoint: `udp://127.0.0.1:30001`, `127.0.0.1:30001`, or a multicast group `239.1.1.1:30001`.
public struct UDPEndpoint: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// The address in network byte order.
    public var address: UInt32
    public var port: UInt16

    public init(address: UInt32, port: UInt16) { self.address = address; self.port = port }

    /// - Throws: `FeedConfigError` saying what part is wrong.
    public init(parsing text: String) throws(FeedConfigError) {
        var s = Substring(text)
        if s.hasPrefix("udp://") { s = s.dropFirst(6) }
        guard let colon = s.lastIndex(of: ":") else {
            throw FeedConfigError("endpoint '\(text)' has no port; expected HOST:PORT such as 127.0.0.1:30001")
        }
        let host = String(s[..<colon]), portText = s[s.index(after: colon)...]
        guard let port = UInt16(portText) else {
            throw FeedConfigError("endpoint '\(text)': port '\(portText)' is not 0-65535 (0: the system picks one when binding)")
        }
        var addr = in_addr()
        let h = host == "localhost" ? "127.0.0.1" : host
        guard inet_pton(AF_INET, h, &addr) == 1 else {
            throw FeedConfigError("endpoint '\(text)': '\(host)' is not an IPv4 address")
        }
        self.address = addr.s_addr
        self.port = port
    }

    /// 224.0.0.0/4.
    public var isMulticast: Bool { (UInt32(bigEndian: address) >> 28) == 0xE }

    public var host: String {
        let a = UInt32(bigEndian: address)
        return "\(a >> 24).\(a >> 16 & 0xff).\(a >> 8 & 0xff).\(a & 0xff)"
    }
    public var description: String { "udp://\(host):\(port)" }

    var sockaddr: sockaddr_in {
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        sa.sin_addr = in_addr(s_addr: address)
        return sa
    }
}

/// An owned UDP socket (IPv4); closed when this goes away. The corresponding C functions are `socket`,
/// `bind`, `setsockopt`, `sendto`, `recvfrom` and `poll`.
public final class UDPSocket: @unchecked Sendable {  // only the descriptor, immutable
    public let fd: Int32

    /// An unbound socket (the kernel picks a port on first send).
    public init() throws(FeedConfigError) {
        fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        if fd < 0 { throw FeedConfigError("socket(): \(String(cString: strerror(errno)))") }
    }

    /// A socket receiving on `endpoint`: bound to it (a multicast group: bound to its port and joined on all
    /// interfaces).
    public convenience init(receivingOn endpoint: UDPEndpoint, bufferBytes: Int = 8 << 20) throws(FeedConfigError) {
        try self.init()
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var size = Int32(clamping: bufferBytes)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        var sa = endpoint.sockaddr
        if endpoint.isMulticast { sa.sin_addr = in_addr(s_addr: 0) }
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 { throw FeedConfigError("cannot bind \(endpoint): \(String(cString: strerror(errno)))") }
        if endpoint.isMulticast {
            var mreq = ip_mreq(imr_multiaddr: in_addr(s_addr: endpoint.address), imr_interface: in_addr(s_addr: 0))
            if setsockopt(fd, Int32(IPPROTO_IP), IP_ADD_MEMBERSHIP, &mreq, socklen_t(MemoryLayout<ip_mreq>.size)) != 0 {
                throw FeedConfigError("cannot join multicast group \(endpoint): \(String(cString: strerror(errno)))")
            }
        }
    }

    deinit { close(fd) }

    /// The local endpoint (after bind or first send).
    public var localEndpoint: UDPEndpoint? {
        var sa = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return rc == 0 ? UDPEndpoint(address: sa.sin_addr.s_addr, port: UInt16(bigEndian: sa.sin_port)) : nil
    }

    /// Sends one datagram; returns false when the kernel refused it (counted by callers, never fatal).
    @discardableResult
    public func send(_ bytes: UnsafeRawBufferPointer, to endpoint: UDPEndpoint) -> Bool {
        var sa = endpoint.sockaddr
        let n = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        return n == bytes.count
    }

    @discardableResult
    public func send(_ bytes: [UInt8], to endpoint: UDPEndpoint) -> Bool {
        bytes.withUnsafeBytes { send($0, to: endpoint) }
    }

    /// Receives one datagram into `buffer` without blocking. Returns its length and sender, or nil when none is
    /// waiting.
    public func receive(into buffer: UnsafeMutableRawBufferPointer) -> (count: Int, from: UDPEndpoint)? {
        var sa = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let n = withUnsafeMutablePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                recvfrom(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT), $0, &len)
            }
        }
        if n < 0 { return nil }
        return (n, UDPEndpoint(address: sa.sin_addr.s_addr, port: UInt16(bigEndian: sa.sin_port)))
    }

    /// Waits until one of `sockets` is readable or `timeoutMillis` passes; returns which are readable.
    public static func poll(_ sockets: [UDPSocket], timeoutMillis: Int32) -> [Bool] {
        var fds = sockets.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        let rc = Glibc.poll(&fds, nfds_t(fds.count), timeoutMillis)
        if rc <= 0 { return Array(repeating: false, count: sockets.count) }
        return fds.map { $0.revents & Int16(POLLIN) != 0 }
    }
}
