import Testing
import TickwireZMQ

@Suite struct ZMQTests {
    @Test func pubSubOverTCPWithPrefixFilter() throws {
        let ctx = ZMQContext()
        let pub = try ctx.socket(.pub)
        try pub.bind("tcp://127.0.0.1:*")
        let endpoint = pub.lastEndpoint
        #expect(endpoint.hasPrefix("tcp://127.0.0.1:"))
        let sub = try ctx.socket(.sub)
        try sub.setReceiveTimeout(milliseconds: 100)
        try sub.connect(endpoint)
        try sub.subscribe("MD.")
        // Subscriptions travel asynchronously: publish until the first arrives.
        var got: [[UInt8]]? = nil
        for _ in 0..<50 where got == nil {
            try pub.sendMultipart([Array("XX.skip".utf8), [0]])
            try pub.sendMultipart([Array("MD.A".utf8), [1, 2, 3]])
            got = try sub.receiveMultipart()
        }
        #expect(got == [Array("MD.A".utf8), [1, 2, 3]])
    }

    @Test func routerDealerOverInproc() throws {
        let ctx = ZMQContext()
        let router = try ctx.socket(.router)
        try router.bind("inproc://rd")
        let dealer = try ctx.socket(.dealer)
        try dealer.setRoutingID(Array("me".utf8))
        try dealer.connect("inproc://rd")
        try dealer.send("hello")
        let frames = try router.receiveMultipart()
        #expect(frames == [Array("me".utf8), Array("hello".utf8)])
        try router.sendMultipart([Array("me".utf8), Array("ack".utf8)])
        #expect(try dealer.receive() == Array("ack".utf8))
    }

    /// A received frame changed in place and sent on as it is (how a relay forwards without copying): the far
    /// end gets the new bytes and the frame's `more` flag, and the message is left empty.
    @Test func aReceivedFrameIsChangedInPlaceAndSentOnUncopied() throws {
        let ctx = ZMQContext()
        let a = try ctx.socket(.pair), b = try ctx.socket(.pair), c = try ctx.socket(.pair), d = try ctx.socket(.pair)
        try b.bind("inproc://in"); try a.connect("inproc://in")
        try d.bind("inproc://out"); try c.connect("inproc://out")
        let long = [UInt8](repeating: 7, count: 100)   // past libzmq's 33-byte small-message size: a heap frame
        try a.sendMultipart([Array("MD.A".utf8), long])
        var head = ZMQMessage(), body = ZMQMessage()
        #expect(try head.receive(from: b) && head.more)
        #expect(try body.receive(from: b) && !body.more)
        body.withUnsafeMutableBytes { $0[0] = 1; $0[99] = 9 }
        try head.send(on: c, more: true)
        try body.send(on: c)
        #expect(body.count == 0)
        var changed = long
        changed[0] = 1; changed[99] = 9
        #expect(try d.receiveMultipart() == [Array("MD.A".utf8), changed])
    }

    @Test func pollReportsReadiness() throws {
        let ctx = ZMQContext()
        let a = try ctx.socket(.pair), b = try ctx.socket(.pair)
        try a.bind("inproc://poll"); try b.connect("inproc://poll")
        #expect(try ZMQ.poll([(b, .readable)], timeoutMs: 0) == [[]])
        try a.send("x")
        #expect(try ZMQ.poll([(b, .readable)], timeoutMs: 1000) == [.readable])
        #expect(try b.receive(dontWait: true) == Array("x".utf8))
        #expect(try b.receive(dontWait: true) == nil)
        // The one-socket wait, without allocating.
        #expect(try b.waitReadable(timeoutMs: 0) == false)
        try a.send("y")
        #expect(try b.waitReadable(timeoutMs: 1000) == true)
        #expect(try b.receive(dontWait: true) == Array("y".utf8))
    }

    @Test func errorsCarryZMQText() throws {
        let ctx = ZMQContext()
        let a = try ctx.socket(.pub)
        try a.bind("tcp://127.0.0.1:*")
        let b = try ctx.socket(.pub)
        #expect {
            try b.bind(a.lastEndpoint)
        } throws: { error in
            let e = error as! ZMQError
            return e.addressInUse && e.description.contains("Address already in use")
        }
        #expect(throws: ZMQError.self) { try b.connect("nonsense://x") }
    }

    @Test func curveKeysAndHandshake() throws {
        #expect(ZMQ.has("curve"))
        let server = try ZMQ.curveKeyPair(), client = try ZMQ.curveKeyPair()
        #expect(server.publicKey.utf8.count == 40)
        #expect(try ZMQ.curvePublic(secretKey: server.secretKey) == server.publicKey)
        let ctx = ZMQContext()
        let rep = try ctx.socket(.router)
        try rep.setCurveServer(secretKey: server.secretKey)
        try rep.bind("tcp://127.0.0.1:*")
        let req = try ctx.socket(.dealer)
        try req.setCurveClient(serverKey: server.publicKey, publicKey: client.publicKey, secretKey: client.secretKey)
        try req.setReceiveTimeout(milliseconds: 2000)
        try req.connect(rep.lastEndpoint)
        try req.send("secret")
        try rep.setReceiveTimeout(milliseconds: 2000)
        let frames = try #require(try rep.receiveMultipart())
        #expect(frames.last == Array("secret".utf8))
    }
}
