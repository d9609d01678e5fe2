import Foundation
import TickwireTestSupport
import Testing
import TickwireCore
import TickwireJournal
import TickwireZMQ
@testable import TickwireDaemon

final class TradeTempDir: Sendable {
    let path: String
    init() {
        var template = Array("/tmp/tw-trades-XXXXXX".utf8CString)
        path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

final class TradeTestLog: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func add(_ s: String) { lock.lock(); items.append(s); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return items }
}

/// A running service on a loopback port picked by the OS, its own ZeroMQ context (the ZAP endpoint is per context).
struct RunningTradeService: @unchecked Sendable {
    let dir: TradeTempDir
    let context = ZMQContext()
    let service: TradeService
    let published = TradeTestLog()
    let logs = TradeTestLog()

    init(dir: TradeTempDir = TradeTempDir(), check: (@Sendable (TradeRequest) -> RejectReason?)? = nil,
         configure: (inout TradeServiceConfig) -> Void = { _ in }) throws {
        self.dir = dir
        let published = self.published, logs = self.logs
        var config = TradeServiceConfig(endpoint: "tcp://127.0.0.1:*", preTradeCheck: check)
        config.retryIndexSlots = 1 << 12
        configure(&config)
        service = TradeService(config: config,
                               dataDirectory: dir.path, context: context, log: { logs.add($0) },
                               publish: { for t in $0 { published.add("\(t.subject) \(t.event.seq) \(Price(e8: t.event.a)) \(Quantity(e8: t.event.b))") } })
        try service.start()
    }

    func client(_ context: ZMQContext) throws -> TradeClient {
        try TradeClient.forDataDirectory(dir.path, context: context, endpoint: service.boundEndpoint)
    }
}

func tradeOrder(_ id: String, symbol: String = "AAPL", qty: Int64 = 100) -> TradeRequest {
    TradeRequest(desk: "DESK7", symbol: symbol, side: .buy, quantity: Quantity(units: qty, decimals: 0),
                 price: try! Price(parsing: "187.25"), clientOrderID: id)
}

@Suite(.serialized) struct TradeServiceTests {
    @Test func admittedKeyGetsADurableAckAndTheTradeIsPublished() throws {
        let s = try RunningTradeService()
        defer { s.service.stop() }
        let ctx = ZMQContext()
        let client = try s.client(ctx)
        defer { client.close() }
        #expect(try client.submit(tradeOrder("A1")) == .ack(clientOrderID: "A1", seq: 1, duplicate: false))
        #expect(try client.submit(tradeOrder("A2")) == .ack(clientOrderID: "A2", seq: 2, duplicate: false))
        #expect(s.published.all == ["TRADE.DESK7.AAPL 1 187.25 100", "TRADE.DESK7.AAPL 2 187.25 100"])
        // First start made the keys, private to the owner.
        for path in [KeyStore.serverPath(s.dir.path), KeyStore.tradersDirectory(s.dir.path) + "/trader1.key"] {
            let mode = (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue
            #expect(mode == 0o600, "\(path)")
        }
        s.service.stop()
        let record = try #require(try JournalAudit.show(directory: s.dir.path + "/journal", seq: 2))
        #expect(TradeWire.decodeRecord(record.payload) == TradeRequest(trader: "trader1", desk: "DESK7", symbol: "AAPL", side: .buy,
                                                                       quantity: Quantity(units: 100, decimals: 0), price: try Price(parsing: "187.25"), clientOrderID: "A2"))
    }

    @Test func unknownKeyIsRefusedAndLogged() throws {
        let s = try RunningTradeService()
        defer { s.service.stop() }
        let ctx = ZMQContext()
        let stranger = try TradeClient(context: ctx, endpoint: s.service.boundEndpoint, serverPublicKey: s.service.serverPublicKey,
                                       keys: try CurveKeyPair.generate(name: "mallory"))
        defer { stranger.close() }
        #expect(throws: TradeServiceError.self) { _ = try stranger.submit(tradeOrder("M1"), timeoutMs: 500) }
        #expect(s.logs.all.contains { $0.contains("refused CURVE key") })
        #expect(s.service.counters.accepted == 0)
        s.service.stop()
        #expect(try JournalAudit.verify(directory: s.dir.path + "/journal").records == 0)
    }

    @Test func retryReturnsTheOriginalAckEvenAfterARestart() throws {
        let dir = TradeTempDir()
        do {
            let s = try RunningTradeService(dir: dir)
            let ctx = ZMQContext()
            let client = try s.client(ctx)
            #expect(try client.submit(tradeOrder("R1")) == .ack(clientOrderID: "R1", seq: 1, duplicate: false))
            #expect(try client.submit(tradeOrder("R2")) == .ack(clientOrderID: "R2", seq: 2, duplicate: false))
            #expect(try client.submit(tradeOrder("R1")) == .ack(clientOrderID: "R1", seq: 1, duplicate: true))
            // The same id with other contents is another trade: refused, saying which, never the first ack.
            guard case .reject(_, let why) = try client.submit(tradeOrder("R1", qty: 5)) else { Issue.record("not refused"); return }
            #expect(why.code == .idInUse && why.text.contains("seq 1") && why.text.contains("quantity 100"), "\(why)")
            client.close()
            s.service.stop()
        }
        let s = try RunningTradeService(dir: dir)
        let ctx = ZMQContext()
        let client = try s.client(ctx)
        #expect(try client.submit(tradeOrder("R2")) == .ack(clientOrderID: "R2", seq: 2, duplicate: true))
        guard case .reject(_, let why) = try client.submit(tradeOrder("R2", symbol: "MSFT")) else { Issue.record("not refused"); return }
        #expect(why.code == .idInUse && why.text.contains("symbol AAPL"), "\(why)")
        #expect(try client.submit(tradeOrder("R3")) == .ack(clientOrderID: "R3", seq: 3, duplicate: false))
        client.close()
        s.service.stop()
        let v = try JournalAudit.verify(directory: dir.path + "/journal")
        #expect(v.ok && v.records == 3)
        #expect(s.published.all.count == 1)
    }

    /// A damaged sector under a running service: a retry whose journal record no longer reads is refused (REJECT
    /// 4, naming the damage; counted and logged), never acknowledged from a guess nor journaled a second time;
    /// retries of sound records and new trades go on.
    @Test func aRetryWhoseRecordIsDamagedOnDiskIsRefusedNotJournaledAgain() throws {
        let s = try RunningTradeService()
        defer { s.service.stop() }
        let ctx = ZMQContext()
        let client = try s.client(ctx)
        defer { client.close() }
        for i in 1...5 { #expect(try client.submit(tradeOrder("D\(i)")) == .ack(clientOrderID: "D\(i)", seq: UInt64(i), duplicate: false)) }
        let record = try #require(try JournalAudit.show(directory: s.dir.path + "/journal", seq: 3))
        let fd = open(s.dir.path + "/journal/" + record.segment, O_RDWR)
        var byte: UInt8 = 0
        let at = off_t(record.offset) + off_t(JournalFormat.recordHeaderSize) + 2
        #expect(pread(fd, &byte, 1, at) == 1)
        byte ^= 0x10
        #expect(pwrite(fd, &byte, 1, at) == 1)
        close(fd)
        guard case .reject(_, let why) = try client.submit(tradeOrder("D3")) else { Issue.record("a retry of a damaged record was answered"); return }
        #expect(why.code == .journalUnavailable && why.text.contains("D3") && why.text.contains("record seq 3") && why.text.contains(record.segment),
                "\(why)")
        #expect(s.service.counters.journalReadFailures == 1)
        #expect(s.logs.all.contains { $0.contains("D3") && $0.contains("CRC32C") }, "\(s.logs.all)")
        #expect(try client.submit(tradeOrder("D2")) == .ack(clientOrderID: "D2", seq: 2, duplicate: true))
        // The refused retry took no sequence.
        #expect(try client.submit(tradeOrder("D6")) == .ack(clientOrderID: "D6", seq: 6, duplicate: false))
        #expect(s.service.counters.accepted == 6)
    }

    @Test func preTradeCheckAndValidationReject() throws {
        let s = try RunningTradeService(check: { $0.symbol == "HALTED" ? RejectReason(.preTradeCheck, "symbol halted") : nil })
        defer { s.service.stop() }
        let ctx = ZMQContext()
        let client = try s.client(ctx)
        defer { client.close() }
        #expect(try client.submit(tradeOrder("H1", symbol: "HALTED")) == .reject(clientOrderID: "H1", RejectReason(.preTradeCheck, "symbol halted")))
        guard case .reject(_, let r) = try client.submit(tradeOrder("Z1", qty: 0)) else { Issue.record("zero quantity accepted"); return }
        #expect(r.code == .invalidField)
        guard case .reject(_, let bad) = try client.submit(tradeOrder("B1", symbol: "A.B")) else { Issue.record("dotted symbol accepted"); return }
        #expect(bad.code == .invalidField)
        #expect(try client.submit(tradeOrder("OK1")) == .ack(clientOrderID: "OK1", seq: 1, duplicate: false))
    }

    @Test func aBatchIsAnsweredInOneMessageInOrder() throws {
        let s = try RunningTradeService(check: { $0.symbol == "HALTED" ? RejectReason(.preTradeCheck, "symbol halted") : nil })
        defer { s.service.stop() }
        let ctx = ZMQContext()
        let client = try s.client(ctx)
        defer { client.close() }
        let batch = [tradeOrder("B1"), tradeOrder("Z1", qty: 0), tradeOrder("H1", symbol: "HALTED"), tradeOrder("B1"), tradeOrder("B2")]
        func replies() throws -> [TradeReply] { try batch.map { _ in try #require(try client.receive(timeoutMs: 10_000)) } }
        try client.send(batch: batch)
        let first = try replies()
        #expect(first[0] == .ack(clientOrderID: "B1", seq: 1, duplicate: false))
        guard case .reject("Z1", let zero) = first[1] else { Issue.record("zero quantity accepted: \(first[1])"); return }
        #expect(zero.code == .invalidField)
        #expect(first[2] == .reject(clientOrderID: "H1", RejectReason(.preTradeCheck, "symbol halted")))
        #expect(first[3] == .ack(clientOrderID: "B1", seq: 1, duplicate: true))   // a retry inside the same message
        #expect(first[4] == .ack(clientOrderID: "B2", seq: 2, duplicate: false))
        // The whole message again: nothing new is journaled.
        try client.send(batch: batch)
        let again = try replies()
        #expect(again[0] == .ack(clientOrderID: "B1", seq: 1, duplicate: true))
        #expect(again[4] == .ack(clientOrderID: "B2", seq: 2, duplicate: true))
        #expect(s.service.counters.accepted == 2)
        #expect(s.published.all.count == 2)
    }

    /// A raw CURVE DEALER, to send what `TradeClient` never would.
    func rawDealer(_ s: RunningTradeService, _ ctx: ZMQContext) throws -> ZMQSocket {
        let server = try CurveKeyPair.read(from: KeyStore.serverPath(s.dir.path))
        let me = try KeyStore.traderPair(data: s.dir.path, name: nil)
        let socket = try ctx.socket(.dealer)
        try socket.setCurveClient(serverKey: server.publicKey, publicKey: me.publicKey, secretKey: me.secretKey!)
        try socket.setReceiveTimeout(milliseconds: 10_000)
        try socket.connect(s.service.boundEndpoint)
        return socket
    }

    @Test func hostileFramesInABatchAreRejectedInPlaceAndTheRestJournaled() throws {
        let s = try RunningTradeService()
        defer { s.service.stop() }
        let ctx = ZMQContext()
        let socket = try rawDealer(s, ctx)
        defer { socket.close() }
        let good = TradeWire.encodeRequest(tradeOrder("G1"))
        let truncated = Array(TradeWire.encodeRequest(tradeOrder("T1")).prefix(30))   // ends inside the desk
        let garbage: [UInt8] = [0xFF, 0x01, 0x02]
        _ = try socket.sendMultipart([good, truncated, garbage, [], TradeWire.encodeRequest(tradeOrder("G2"))])
        let replies = try #require(try socket.receiveMultipart()).map { try TradeWire.decodeReply($0) }
        #expect(replies.count == 5)
        #expect(replies[0] == .ack(clientOrderID: "G1", seq: 1, duplicate: false))
        for (i, needle) in [(1, "runs past the end"), (2, "byte 0"), (3, "byte 0")] {
            guard case .reject("", let r) = replies[i] else { Issue.record("frame \(i) accepted: \(replies[i])"); continue }
            #expect(r.code == .malformed && r.text.contains(needle), "frame \(i): \(r.text)")
        }
        #expect(replies[4] == .ack(clientOrderID: "G2", seq: 2, duplicate: false))
        #expect(s.service.counters.malformed == 3 && s.service.counters.accepted == 2)

        // More SUBMIT frames than a message may carry: each is refused, none is journaled.
        let tooMany = (0...TradeWire.maxTradesPerMessage).map { TradeWire.encodeRequest(tradeOrder("M\($0)")) }
        _ = try socket.sendMultipart(tooMany)
        let refused = try #require(try socket.receiveMultipart())
        #expect(refused.count == tooMany.count)
        guard case .reject(_, let why) = try TradeWire.decodeReply(refused[0]) else { Issue.record("an oversized batch was accepted"); return }
        #expect(why.code == .malformed && why.text.contains("at most \(TradeWire.maxTradesPerMessage)"), "\(why.text)")
        let client = try s.client(ctx)
        defer { client.close() }
        #expect(try client.submit(tradeOrder("after")) == .ack(clientOrderID: "after", seq: 3, duplicate: false))
    }

    /// A batch packed in one frame is judged as the same frames one a frame would be, and answered in one packed
    /// frame, in order.
    @Test func hostileFramesInAPackedBatchAreRejectedInPlaceAndTheRestJournaled() throws {
        let s = try RunningTradeService()
        defer { s.service.stop() }
        let ctx = ZMQContext()
        let socket = try rawDealer(s, ctx)
        defer { socket.close() }
        let truncated = Array(TradeWire.encodeRequest(tradeOrder("T1")).prefix(30))
        _ = try socket.send(TradeWire.pack(TradeWire.submitPacked, [TradeWire.encodeRequest(tradeOrder("G1")), truncated, [0xFF, 0x01],
                                                                    [], TradeWire.encodeRequest(tradeOrder("G1"))]))
        let message = try #require(try socket.receiveMultipart())
        #expect(message.count == 1 && message[0].first == TradeWire.repliesPacked)
        let replies = try TradeWire.unpack(message[0], type: TradeWire.repliesPacked).map { try TradeWire.decodeReply($0) }
        #expect(replies.count == 5)
        #expect(replies[0] == .ack(clientOrderID: "G1", seq: 1, duplicate: false))
        for (i, needle) in [(1, "runs past the end"), (2, "byte 0"), (3, "byte 0")] {
            guard case .reject("", let r) = replies[i] else { Issue.record("frame \(i) accepted: \(replies[i])"); continue }
            #expect(r.code == .malformed && r.text.contains(needle), "frame \(i): \(r.text)")
        }
        #expect(replies[4] == .ack(clientOrderID: "G1", seq: 1, duplicate: true))
        #expect(s.service.counters.malformed == 3 && s.service.counters.accepted == 1)

        // More trades than a message may carry, packed: each is refused, none is journaled.
        let tooMany = (0...TradeWire.maxTradesPerMessage).map { TradeWire.encodeRequest(tradeOrder("M\($0)")) }
        _ = try socket.send(TradeWire.pack(TradeWire.submitPacked, tooMany))
        let refused = try TradeWire.unpack(try #require(try socket.receiveMultipart()).first!, type: TradeWire.repliesPacked)
        #expect(refused.count == tooMany.count)
        guard case .reject(_, let why) = try TradeWire.decodeReply(refused[0]) else { Issue.record("an oversized batch was accepted"); return }
        #expect(why.code == .malformed && why.text.contains("at most \(TradeWire.maxTradesPerMessage)"), "\(why.text)")
        #expect(s.service.counters.accepted == 1)
    }

    /// A packed frame whose own structure is broken, cut at any byte, is refused whole: one packed REJECT naming
    /// the byte, nothing journaled, and the connection still served.
    @Test func aBrokenPackedFrameIsRefusedWhole() throws {
        let s = try RunningTradeService()
        defer { s.service.stop() }
        let ctx = ZMQContext()
        let socket = try rawDealer(s, ctx)
        defer { socket.close() }
        let packed = TradeWire.pack(TradeWire.submitPacked, (0..<3).map { TradeWire.encodeRequest(tradeOrder("P\($0)")) })
        for n in 1..<packed.count {
            _ = try socket.send(Array(packed.prefix(n)))
            let message = try #require(try socket.receiveMultipart(), "\(n) bytes: no reply")
            let replies = try TradeWire.unpack(message[0], type: TradeWire.repliesPacked).map { try TradeWire.decodeReply($0) }
            guard replies.count == 1, case .reject("", let why) = replies[0], why.code == .malformed else {
                Issue.record("\(n) bytes: \(replies)"); continue
            }
            #expect(why.text.contains("byte") || why.text.contains("header"), "\(n) bytes: \(why.text)")
        }
        #expect(s.service.counters.accepted == 0 && s.service.counters.malformed == packed.count - 1)
        // The whole frame, on the same connection: three trades journaled.
        _ = try socket.send(packed)
        let whole = try TradeWire.unpack(try #require(try socket.receiveMultipart())[0], type: TradeWire.repliesPacked)
        #expect(try whole.map { try TradeWire.decodeReply($0) } == (0..<3).map { .ack(clientOrderID: "P\($0)", seq: UInt64($0 + 1), duplicate: false) })
        // The largest batch a client may pack, well over a plain frame's size, is taken.
        let client = try s.client(ctx)
        defer { client.close() }
        let big = (0..<TradeWire.maxTradesPerMessage).map {
            TradeRequest(desk: String(repeating: "D", count: 32), symbol: String(repeating: "S", count: 32), side: .buy,
                         quantity: Quantity(e8: 100_000_000), price: Price(e8: 100_000_000), clientOrderID: String(repeating: "x", count: 58) + "\($0 + 100_000)")
        }
        try client.send(batch: big)
        for i in 0..<big.count {
            let reply = try #require(try client.receive(timeoutMs: 10_000), "reply \(i)")
            #expect(reply == .ack(clientOrderID: big[i].clientOrderID, seq: UInt64(i + 4), duplicate: false))
        }
    }

    @Test func manyInFlightFromSeveralClientsAreEachAckedOnce() throws {
        let s = try RunningTradeService()
        defer { s.service.stop() }
        let clients = 3, each = 300
        let seqs = TradeTestLog()
        let group = DispatchGroup()
        for c in 0..<clients {
            group.enter()
            Thread.detachNewThread {
            defer { group.leave() }
            let ctx = ZMQContext()
            let client = try! s.client(ctx)
            for i in 0..<each { try! client.send(tradeOrder("C\(c)-\(i)")) }
            var got = 0
            while got < each, let reply = try! client.receive(timeoutMs: 5000) {
                if case .ack(_, let seq, false) = reply { seqs.add(String(seq)) }
                got += 1
            }
            client.close()
            }
        }
        group.wait()
        let all = seqs.all.compactMap { UInt64($0) }.sorted()
        #expect(all == Array(1...UInt64(clients * each)))
    }

    @Test func busyPortIsAClearError() throws {
        let s = try RunningTradeService()
        defer { s.service.stop() }
        let otherDir = TradeTempDir()
        let other = TradeService(config: TradeServiceConfig(endpoint: s.service.boundEndpoint), dataDirectory: otherDir.path,
                                 context: ZMQContext())
        do {
            try other.start()
            Issue.record("second bind succeeded")
        } catch let e as TradeServiceError {
            #expect("\(e)".contains("in use"))
        }
    }
}
