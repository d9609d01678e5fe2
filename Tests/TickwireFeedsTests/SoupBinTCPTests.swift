import Foundation
import Testing
import TickwireCore
@testable import TickwireFeeds
#if canImport(Glibc)
import Glibc
#endif

/// SoupBinTCP framing and the snapshot server against hostile peers: every bad input closes that connection
/// and is counted by kind, and the server goes on serving good clients.
@Suite(.serialized) struct SoupBinTCPTests {
    let loopback0 = try! UDPEndpoint(parsing: "127.0.0.1:0")

    @Test func fieldsAreSpacePaddedAndParsedBack() {
        #expect(SoupBinTCP.numeric(42, 20) == Array("                  42".utf8))
        #expect(SoupBinTCP.parseNumeric(Array("                  42".utf8)) == 42)
        #expect(SoupBinTCP.parseNumeric(Array("                    ".utf8)) == 0)
        #expect(SoupBinTCP.parseNumeric(Array("  4 2".utf8)) == nil)
        #expect(SoupBinTCP.parseNumeric(Array("99999999999999999999".utf8)) == nil)   // over UInt64
        #expect(SoupBinTCP.alpha("AB", 6) == Array("AB    ".utf8))
        let login = SoupBinTCP.loginRequest(username: "u", password: "p", session: "", sequence: 1)
        #expect(login.count == SoupBinTCP.loginRequestPayload)
    }

    @Test func theFramerCutsPacketsAcrossReadsAndRefusesBadLengths() throws {
        var out: [UInt8] = []
        SoupBinTCP.append(.serverHeartbeat, to: &out)
        SoupBinTCP.append(.sequencedData, [1, 2, 3], to: &out)
        var f = SoupBinTCPFramer(maxPacket: 16)
        for b in out {   // one byte at a time
            [b].withUnsafeBytes { f.append($0) }
        }
        let first = try #require(try f.next())
        #expect(first.type == UInt8(ascii: "H") && first.payload.isEmpty)
        let second = try #require(try f.next())
        #expect(second.type == UInt8(ascii: "S") && Array(second.payload) == [1, 2, 3])
        #expect(try f.next() == nil)
        for bad in [[0, 0], [0, 17], [0xFF, 0xFF]] as [[UInt8]] {
            var g = SoupBinTCPFramer(maxPacket: 16)
            bad.withUnsafeBytes { g.append($0) }
            #expect(throws: SoupBinTCP.Fault.badLength) { try g.next() }
        }
    }

    /// A server on loopback with the fixture's books, served by its own thread until stopped.
    final class Served: @unchecked Sendable {   // `server` is touched by its thread only until `stop()` returns
        let server: GlimpseServer
        let stopSignal = StopSignal()
        let done = DispatchSemaphore(value: 0)
        init(_ options: GlimpseServer.Options) throws {
            server = try GlimpseServer(on: try UDPEndpoint(parsing: "127.0.0.1:0"), session: "TICKWIRE", options: options)
            var state = ITCHSnapshotState()
            for m in SnapshotTests.messages { m.withUnsafeBytes { state.apply(ITCHMessage(base: $0.baseAddress!, length: $0.count)) } }
            let s = state
            Thread.detachNewThread { [self] in
                while !stopSignal.isRaised { server.serve(state: s, nextSequence: 1001); usleep(500) }
                done.signal()
            }
        }
        func stop() -> GlimpseServer.Counts { stopSignal.raise(); done.wait(); return server.counts }
    }

    /// A raw client: connects (blocking), sends bytes, and reads until the server closes or `seconds` pass.
    func rawSession(_ endpoint: UDPEndpoint, send bytes: [UInt8], seconds: Double = 3) throws -> (received: [UInt8], closed: Bool) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET); sa.sin_port = endpoint.port.bigEndian; sa.sin_addr = in_addr(s_addr: endpoint.address)
        let rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        #expect(rc == 0)
        if !bytes.isEmpty { _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 50) <= 0 { continue }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { return (received, true) }
            received += buffer[0..<n]
        }
        return (received, false)
    }

    func login(user: String = "", password: String = "") -> [UInt8] {
        var out: [UInt8] = []
        SoupBinTCP.append(.loginRequest, SoupBinTCP.loginRequest(username: user, password: password, session: "", sequence: 1), to: &out)
        return out
    }

    /// Takes a snapshot with the library's client, as the MoldUDP64 source does.
    func takeSnapshot(_ endpoint: UDPEndpoint, user: String = "", password: String = "") -> GlimpseClient.State {
        var o = GlimpseClient.Options(endpoint: endpoint)
        o.username = user; o.password = password; o.timeoutNanos = 5_000_000_000
        guard let c = try? GlimpseClient(o) else { return .failed("no socket") }
        while true {
            let s = c.pump()
            if case .inProgress = s { usleep(1_000); continue }
            return s
        }
    }

    @Test(.timeLimit(.minutes(5))) func hostileInputIsClosedAndCountedAndGoodClientsAreStillServed() throws {
        var options = GlimpseServer.Options()
        options.loginTimeoutNanos = 300_000_000
        options.username = "desk"; options.password = "secret"
        let served = try Served(options)
        let endpoint = served.server.endpoint!
        // A length of zero, a length past the cap, garbage, a heartbeat before login, a login of the wrong size.
        var heartbeat: [UInt8] = []; SoupBinTCP.append(.clientHeartbeat, to: &heartbeat)
        var shortLogin: [UInt8] = []; SoupBinTCP.append(.loginRequest, [UInt8](repeating: 0x20, count: 10), to: &shortLogin)
        var badSequence = login(user: "desk", password: "secret"); badSequence[badSequence.count - 1] = UInt8(ascii: "x")
        let cases: [(String, [UInt8])] = [("zero length", [0, 0, 0x4C]), ("length past the cap", [0x01, 0x00] + [UInt8](repeating: 0x41, count: 256)),
                                          ("garbage", [UInt8](repeating: 0xFF, count: 1000)), ("heartbeat before login", heartbeat),
                                          ("short login", shortLogin), ("sequence not digits", badSequence)]
        for (what, bytes) in cases {
            let r = try rawSession(endpoint, send: bytes)
            #expect(r.closed, "\(what): the server should close the connection")
            #expect(r.received.isEmpty, "\(what): nothing is sent to a peer that never logged in")
        }
        // Nothing at all: closed at the login timeout.
        let silent = try rawSession(endpoint, send: [])
        #expect(silent.closed)
        // A wrong password: login rejected ('J', reason 'A'), then closed.
        let wrong = try rawSession(endpoint, send: login(user: "desk", password: "guess"))
        #expect(wrong.closed && wrong.received == [0, 2, UInt8(ascii: "J"), UInt8(ascii: "A")])
        // A good client still gets the whole snapshot.
        guard case .done(let snap) = takeSnapshot(endpoint, user: "desk", password: "secret") else {
            Issue.record("a good client got no snapshot"); _ = served.stop(); return
        }
        #expect(snap.nextSequence == 1001 && snap.session == "TICKWIRE" && snap.count > 100)
        // After login, an unknown packet type closes the connection too.
        var after = login(user: "desk", password: "secret"); SoupBinTCP.append(.sequencedData, [1], to: &after)
        let typed = try rawSession(endpoint, send: after)
        #expect(typed.closed)
        let counts = served.stop()
        #expect(counts.faults[.badLength] == 3)     // zero, past the cap, garbage (0xFFFF)
        #expect(counts.faults[.badLogin] == 3)      // heartbeat first, short login, letters in the sequence
        #expect(counts.faults[.loginTimeout] == 1)
        #expect(counts.faults[.badType] == 1)
        #expect(counts.rejectedLogins == 1)
        #expect(counts.snapshots == 2)
    }

    @Test(.timeLimit(.minutes(5))) func connectionsPastTheCapAreClosedAsTheyCome() throws {
        var options = GlimpseServer.Options()
        options.maxConnections = 2
        let served = try Served(options)
        let endpoint = served.server.endpoint!
        // Two idle connections hold the slots (they never log in within the test).
        var holders: [Int32] = []
        for _ in 0..<2 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET); sa.sin_port = endpoint.port.bigEndian; sa.sin_addr = in_addr(s_addr: endpoint.address)
            _ = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            holders.append(fd)
        }
        defer { holders.forEach { close($0) } }
        usleep(100_000)
        let third = try rawSession(endpoint, send: login(), seconds: 2)
        #expect(third.closed && third.received.isEmpty)
        let counts = served.stop()
        #expect(counts.refused == 1)
        #expect(counts.connections == 3)
    }

    @Test(.timeLimit(.minutes(5))) func aClientSilentAfterLoginIsClosedAtTheIdleTimeout() throws {
        var options = GlimpseServer.Options()
        options.idleTimeoutNanos = 300_000_000
        let served = try Served(options)
        let r = try rawSession(served.server.endpoint!, send: login(), seconds: 5)
        #expect(r.closed)
        // It got the login accepted and the whole snapshot, its end last, before the silence closed it.
        #expect(r.received.count > 1_000 && r.received[2] == UInt8(ascii: "A"))
        #expect(Array(r.received.suffix(21)) == GlimpseSnapshot.endOfSnapshot(nextSequence: 1001))
        #expect(served.stop().faults[.idleTimeout] == 1)
    }

    @Test(.timeLimit(.minutes(5))) func aSnapshotLargerThanTheOutputCapIsNotSent() throws {
        var options = GlimpseServer.Options()
        options.maxOutputBytes = 4_096
        let served = try Served(options)
        guard case .failed(let why) = takeSnapshot(served.server.endpoint!) else {
            Issue.record("a snapshot over the cap was sent"); _ = served.stop(); return
        }
        #expect(why.contains("closed"))
        #expect(served.stop().faults[.outputOverflow] == 1)
    }

    @Test(.timeLimit(.minutes(5))) func theClientNamesWhatWentWrong() throws {
        // No server: the connection is refused.
        let dead = try UDPSocket(receivingOn: loopback0)   // a UDP port: nothing listens on TCP there
        guard case .failed(let why) = takeSnapshot(dead.localEndpoint!) else { Issue.record("connected to nothing"); return }
        #expect(why.contains("cannot connect") && why.contains("tcp://127.0.0.1:"))
    }
}
