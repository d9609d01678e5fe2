import Foundation
import Synchronization
import TickwireClient
import TickwireCore
import TickwireNATS

/// The daemon's second way out: every message the ZeroMQ publisher sends, with the same subject, the same 72-byte
/// payload and the same `seq`/`subject_seq`, also goes to core NATS (docs/PROTOCOL.md, "NATS").
///
/// The ZeroMQ publisher hands each encoded payload over through `NATSHandoff` and never waits for this thread;
/// this thread publishes what is queued and writes it in one go (`batchedWrites`): a message that finds the thread
/// idle is written at once (the latency of libnats' send-as-soon-as-possible mode, NATS.md), a burst that queued
/// up behind it costs one system call per batch instead of one per message. A NATS
/// outage never reaches the feed: libnats buffers nothing while disconnected (`reconnectBufferBytes` 0), so each
/// publish then fails at once and is counted, and the connection moves by itself to any server of the list.
/// Once connected again, a GAP notice per stream names the exact `seq` range NATS subscribers did not get:
/// subject `SYS.NATS.GAP.<STREAM>`, kind GAP, `w0`…`w1` the first and last lost `seq` of that stream.
final class NATSPublisher: @unchecked Sendable {
    static let gapSubjectPrefix = "SYS.NATS.GAP."

    let servers: [String]
    let connection: NATSConnection
    let handoff: NATSHandoff
    let subjects: SubjectTable
    private let log: @Sendable (String) -> Void

    let sent = Atomic<UInt64>(0)
    /// Publishes the client library refused (no server, the connection closing).
    let failed = Atomic<UInt64>(0)
    let gapNotices = Atomic<UInt64>(0)
    /// Disconnections seen (each one followed by reconnection attempts); counted on libnats' thread.
    let connectionEvents = NATSConnectionCounts()
    /// Messages reported lost in GAP notices.
    let reportedLost = Atomic<UInt64>(0)

    // The NATS thread's own state.
    private var cachedSubjects: [UnsafeMutablePointer<CChar>?] = []
    private var cachedStreams: [Int] = []
    private var streamIndex: [String: Int] = [:]
    private var streamNames: [String] = []
    private var tracker = NATSLossTracker()
    private var noticeSeq: [Int: UInt64] = [:]
    private var noticeSubjects: [Int: UnsafeMutablePointer<CChar>] = [:]
    private let notice = UnsafeMutableRawPointer.allocate(byteCount: WireCodec.payloadSize, alignment: 8)
    /// Late joiners' snapshots: the last values, and the requests (read on this thread between batches).
    private var lastValues = PublishedLastValues()
    private let requests: NATSSyncSubscription
    let snapshotsServed = Atomic<UInt64>(0)
    let snapshotRequestsMalformed = Atomic<UInt64>(0)
    /// Active/active: whether this daemon holds the market-data lease (nil: it always publishes). Only the holder
    /// answers snapshot requests: two answers to one request would interleave their chunks, and the standby's
    /// values carry another publisher's sequences.
    var holdsLease: (@Sendable () -> Bool)?
    /// A takeover notice starts the values afresh: what this daemon published before it last lost the lease is
    /// older than what the other published since.
    private let takeoverID: SubjectID

    /// Connects to the cluster. With `required`, no server reachable is an error; without, the daemon starts
    /// anyway, says so, and keeps trying in the background (what it cannot send meanwhile is counted and reported).
    /// - Throws: `NATSError` naming the URLs.
    init(servers: [String], required: Bool, subjects: SubjectTable, sendAsap: Bool = true, queueCapacity: Int = 1 << 16,
         log: @escaping @Sendable (String) -> Void) throws(NATSError) {
        self.servers = servers
        self.subjects = subjects
        self.log = log
        handoff = NATSHandoff(capacity: queueCapacity)
        var options = NATSConnection.Options(servers: servers)
        options.name = "tickwire-publisher"
        options.sendAsap = sendAsap
        options.batchedWrites = sendAsap
        options.reconnectBufferBytes = 0
        options.maxReconnect = -1
        options.connectTimeoutMs = 2_000
        let counts = connectionEvents
        options.onEvent = { event in
            switch event {
            case .disconnected:
                counts.disconnects.add(1, ordering: .relaxed)
                log("NATS disconnected; reconnecting to any of the cluster's servers")
            case .reconnected(let url):
                counts.reconnects.add(1, ordering: .relaxed)
                log("NATS reconnected to \(url)")
            case .error(let e): log("NATS: \(e)")
            case .closed: break
            }
        }
        do {
            connection = try NATSConnection(options)
        } catch {
            if required { throw error }
            log("NATS \(servers.joined(separator: ",")): no server reachable (\(error)); the daemon runs on and keeps trying; what NATS subscribers miss meanwhile is counted and reported to them as a GAP")
            options.retryOnFailedConnect = true
            connection = try NATSConnection(options)
        }
        requests = try connection.subscribeSync(SnapshotCodec.requestSubject)
        takeoverID = subjects.intern(text: "SYS.TAKEOVER")
    }

    deinit {
        for s in cachedSubjects { free(s) }
        for s in noticeSubjects.values { free(s) }
        notice.deallocate()
    }

    /// The NATS thread: publishes what the handoff brings until it is closed and drained, then flushes.
    func run() {
        while true {
            // What is queued goes out in one write (a batch of one when keeping up): with `sendAsap` alone, each
            // message cost a system call and the thread fell behind the raw libnats publisher (BENCHMARKS.md, NATS).
            var batching = false
            let n = handoff.drain(maxBatch: 256, timeoutNanos: 100_000_000) { id, payload in
                if !batching { connection.beginWriteBatch(); batching = true }
                send(id, payload)
            }
            if n < 0 { break }
            if tracker.hasPending && connection.isConnected { reportLoss() }
            serveSnapshots()
            if batching { connection.endWriteBatch() }
        }
        if tracker.hasPending && connection.isConnected { reportLoss() }
        try? connection.flush(timeoutMs: 2_000)
        connection.close()
    }

    @inline(__always)
    private func send(_ id: SubjectID, _ payload: UnsafeRawBufferPointer) {
        let (subject, stream) = entry(id)
        let seq = UInt64(littleEndian: payload.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        tracker.arrived(stream: stream, seq: seq)
        if id == takeoverID { lastValues = PublishedLastValues() }
        lastValues.update(id, payload)
        if connection.tryPublish(subject: subject, bytes: payload) {
            sent.add(1, ordering: .relaxed)
        } else {
            failed.add(1, ordering: .relaxed)
            tracker.failed(stream: stream, seq: seq)
        }
    }

    /// The subject as a C string and its stream, converted once per subject.
    @inline(__always)
    private func entry(_ id: SubjectID) -> (UnsafeMutablePointer<CChar>, Int) {
        let i = Int(id)
        if i < cachedSubjects.count, let s = cachedSubjects[i] { return (s, cachedStreams[i]) }
        if i >= cachedSubjects.count {
            let grown = max(i + 1, cachedSubjects.count * 2, 1024)
            cachedSubjects.append(contentsOf: repeatElement(nil, count: grown - cachedSubjects.count))
            cachedStreams.append(contentsOf: repeatElement(0, count: grown - cachedStreams.count))
        }
        let text = subjects.text(id)
        let root = String(text.prefix { $0 != "." })
        let stream = streamIndex[root] ?? {
            streamNames.append(root)
            streamIndex[root] = streamNames.count - 1
            return streamNames.count - 1
        }()
        let c = strdup(text)!
        cachedSubjects[i] = c
        cachedStreams[i] = stream
        return (c, stream)
    }

    /// Answers the snapshot requests waiting now, each with what this thread has published so far: a subscriber
    /// that subscribed before asking gets every later message live, and stitches by `subject_seq`.
    private func serveSnapshots() {
        let answering = holdsLease?() ?? true
        while let request = requests.next(timeoutMs: 0, { m in (m.reply, String(decoding: m.bytes, as: UTF8.self)) }) {
            guard answering else { continue }   // the leaseholder answers
            guard let reply = request.0 else { snapshotRequestsMalformed.add(1, ordering: .relaxed); continue }
            var patterns: [SubjectPattern] = []
            for text in request.1.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
                guard let p = try? SubjectPattern(String(text)) else { patterns = []; break }
                patterns.append(p)
            }
            guard !patterns.isEmpty else {
                snapshotRequestsMalformed.add(1, ordering: .relaxed)
                // An empty chunk list still answers, so the requester does not wait for its timeout.
                _ = try? connection.publish(subject: reply, bytes: SnapshotCodec.chunks([])[0])
                continue
            }
            for chunk in lastValues.snapshot(matching: patterns, subjects: subjects) {
                _ = try? connection.publish(subject: reply, bytes: chunk)
            }
            snapshotsServed.add(1, ordering: .relaxed)
        }
    }

    /// Publishes one GAP notice per lost range; what cannot be published now waits for the next chance.
    private func reportLoss() {
        let ranges = tracker.take()
        var unsent: [NATSLossTracker.Range] = []
        for r in ranges {
            guard unsent.isEmpty else { unsent.append(r); continue }
            let subject = noticeSubjects[r.stream] ?? {
                let s = strdup(Self.gapSubjectPrefix + streamNames[r.stream])!
                noticeSubjects[r.stream] = s
                return s
            }()
            let number = (noticeSeq[r.stream] ?? 0) + 1
            let now = Nanos.now()
            var e = Event.gap(0, first: r.first, last: r.last, scope: .publisher, eventTime: now, knownTime: now)
            e.seq = number
            WireCodec.encode(e, subjectSeq: number, into: notice)
            if connection.tryPublish(subject: subject, bytes: UnsafeRawBufferPointer(start: notice, count: WireCodec.payloadSize)) {
                noticeSeq[r.stream] = number
                gapNotices.add(1, ordering: .relaxed)
                reportedLost.add(r.count, ordering: .relaxed)
                log("NATS: reported \(r.count) messages of stream \(streamNames[r.stream]) lost to NATS subscribers (seq \(r.first)...\(r.last)) on \(Self.gapSubjectPrefix)\(streamNames[r.stream])")
            } else {
                unsent.append(r)
            }
        }
        tracker.giveBack(unsent)
    }

    var isConnected: Bool { connection.isConnected }
}

/// Connection events counted on libnats' callback thread.
final class NATSConnectionCounts: Sendable {
    let disconnects = Atomic<UInt64>(0)
    let reconnects = Atomic<UInt64>(0)
}
