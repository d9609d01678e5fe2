import Foundation
import Synchronization
import Testing
import TickwireCore
@testable import TickwireDaemon
import TickwireRing
import TickwireTestSupport
import TickwireZMQ

/// The publish stage's turn: several producers publish into a small ring and send what waits themselves when no
/// other thread is sending, or hand it to the publisher thread (a flood), beside it. Every event reaches the
/// subscriber once, numbered without a gap, each producer's in its order; a producer that never kicks is still
/// sent, by the thread.
/// (Under the thread sanitizer too: Tools/test.sh.)
@Suite(.timeLimit(.minutes(5))) struct PublishStageTests {
    struct Fixture {
        let context = ZMQContext()
        let subjects = SubjectTable()
        let ring: BroadcastRing
        let stage: PublishStage
        let subscriber: ZMQSocket
        let thread: Thread

        init(ringCapacity: Int) throws {
            ring = BroadcastRing(capacity: ringCapacity, producers: .multi, gapSubject: subjects.intern(text: "SYS.GAP"),
                                 asymmetricFences: false)
            let endpoint = "inproc://publish-stage-\(UInt64.random(in: 0...UInt64.max))"
            let publisher = try ZMQPublisher(context: context, endpoint: endpoint, highWaterMark: 0, subjects: subjects)
            stage = PublishStage(publisher: publisher, ring: ring, lease: nil, takeover: subjects.intern(text: "SYS.TAKEOVER"))
            subscriber = try context.socket(.sub)
            try subscriber.setReceiveHighWaterMark(0)
            try subscriber.subscribe("")
            try subscriber.connect(endpoint)
            try subscriber.setReceiveTimeout(milliseconds: 20)
            thread = Thread { [stage] in stage.run() }
            thread.start()
            // Joined: a warm-up event seen (a PUB socket drops what it sends before the subscription arrives).
            let warm = subjects.intern(text: "SYS.WARMUP")
            for _ in 0..<500 {
                ring.publish(Event(subjectID: warm, kind: .quote, eventTime: Nanos(0), knownTime: Nanos(0)))
                stage.kick()
                if try subscriber.receiveMultipart() != nil { break }
            }
            while try subscriber.receiveMultipart() != nil {}
        }

        /// Receives until `count` non-warm-up events arrived or 10 s passed without one.
        func receive(_ count: Int) throws -> [(subject: String, seq: UInt64, a: Int64)] {
            try subscriber.setReceiveTimeout(milliseconds: 10_000)
            var got: [(String, UInt64, Int64)] = []
            while got.count < count, let frames = try subscriber.receiveMultipart() {
                let subject = String(decoding: frames[0], as: UTF8.self)
                if subject == "SYS.WARMUP" { continue }
                let (e, _) = try WireCodec.decode(frames[1])
                got.append((subject, e.seq, e.a))
            }
            return got
        }

        func close() {
            ring.close()
            stage.wakeThread()
            while !thread.isFinished { usleep(1_000) }
            subscriber.close()
        }
    }

    @Test func producersSendingInTurnsDeliverEveryEventOnceAndInOrder() throws {
        let seed = testSeed()
        let f = try Fixture(ringCapacity: 256)   // small: producers also wait for the sender
        let producers = 3, perProducer = 20_000
        let ids = (0..<producers).map { f.subjects.intern(text: "MD.P\($0).QUOTE") }
        let done = Atomic<Int>(0)
        for p in 0..<producers {
            let t = Thread { [ring = f.ring, stage = f.stage] in
                var rng = SplitMix(seed: seed &+ UInt64(p))
                var batch: [Event] = []
                var i = 0
                while i < perProducer {
                    let n = min(perProducer - i, Int(rng.next() % 64) + 1)
                    batch = (i..<(i + n)).map { Event(subjectID: ids[p], kind: .quote, eventTime: Nanos(1), knownTime: Nanos(1), a: Int64($0)) }
                    batch.withUnsafeBufferPointer { b in
                        var sent = 0
                        while sent < b.count { sent += ring.publish(contentsOf: UnsafeBufferPointer(rebasing: b[sent...])) }
                    }
                    i += n
                    switch rng.next() % 8 {
                    case 0: break                                  // left to the publisher thread's look
                    case 1, 2: stage.kick(flooding: true)          // handed to the publisher thread
                    default: stage.kick()                          // sent here when the turn is free
                    }
                }
                done.add(1, ordering: .releasing)
            }
            t.start()
        }
        let got = try f.receive(producers * perProducer)
        while done.load(ordering: .acquiring) < producers { usleep(1_000) }
        f.close()
        #expect(got.count == producers * perProducer, "seed \(seed)")
        let seqs = got.map(\.seq)
        #expect(zip(seqs, seqs.dropFirst()).allSatisfy { $1 == $0 + 1 }, "numbered without a gap or a repeat (seed \(seed))")
        for p in 0..<producers {
            let mine = got.filter { $0.subject == "MD.P\(p).QUOTE" }.map(\.a)
            #expect(mine == (0..<Int64(perProducer)).map { $0 }, "producer \(p) in order (seed \(seed))")
        }
    }

    @Test func whatNoProducerKicksIsSentByThePublisherThread() throws {
        let f = try Fixture(ringCapacity: 64)
        let id = f.subjects.intern(text: "MD.QUIET.QUOTE")
        f.ring.publish(Event(subjectID: id, kind: .quote, eventTime: Nanos(1), knownTime: Nanos(1), a: 7))
        let got = try f.receive(1)
        f.close()
        #expect(got.map(\.a) == [7])
    }
}
