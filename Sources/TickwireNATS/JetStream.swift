import CNATS
#if canImport(Glibc)
import Glibc
#endif

/// JetStream on one connection: streams, publishes acknowledged by the stream (deduplicated by `Nats-Msg-Id`),
/// stored messages by sequence, and ordered consumers that deliver a stream in its order from any sequence.
///
/// What the Debian server (2.9.10) promises, measured here (../docs/NATS.md in the shared notes): an
/// acknowledgement means a quorum of servers holds the message *in memory* (no fsync); the per-subject expected
/// sequence is unsafe on replicated streams, the stream-wide one is sound; a leader election takes 4–7 s.
public final class JetStream: @unchecked Sendable {
    public struct Options: Sendable {
        /// How long an API call or a synchronous publish waits for its answer.
        public var waitMs: Int64 = 5_000
        /// Asynchronous publishes in flight at most; a further `publishAsync` waits up to `stallWaitMs`.
        public var maxPendingAsync: Int64 = 1_024
        public var stallWaitMs: Int64 = 200
        /// Each asynchronous publish's outcome, on libnats' thread, with the `Nats-Msg-Id` it was sent with.
        public var onAsyncAck: (@Sendable (_ msgId: String?, _ result: Result<PubAck, NATSError>) -> Void)? = nil
        public init() {}
    }

    public struct PubAck: Sendable, Equatable {
        /// The message's sequence in the stream (the original's, for a duplicate).
        public let sequence: UInt64
        /// The stream already held a message with this `Nats-Msg-Id` inside its duplicate window.
        public let duplicate: Bool
        public init(sequence: UInt64, duplicate: Bool) {
            self.sequence = sequence
            self.duplicate = duplicate
        }
    }

    public struct StreamConfig: Sendable {
        public var name: String
        public var subjects: [String]
        public var replicas: Int = 1
        public var fileStorage: Bool = true
        /// `Nats-Msg-Id` deduplication window (the server's default is 2 minutes).
        public var duplicateWindowNanos: Int64 = 120_000_000_000
        /// 0 keeps messages for ever.
        public var maxAgeNanos: Int64 = 0
        public var maxMessageBytes: Int32 = -1
        /// A log: no message may be deleted, the stream not purged.
        public var denyDeleteAndPurge: Bool = true
        public init(name: String, subjects: [String]) {
            self.name = name
            self.subjects = subjects
        }
    }

    public struct StreamInfo: Sendable {
        public let firstSequence: UInt64
        public let lastSequence: UInt64
        public let messages: UInt64
        /// The server that leads the stream's RAFT group now (nil for a stream without replicas).
        public let leader: String?
        /// The other replicas: name, whether caught up, whether offline.
        public let replicas: [(name: String, current: Bool, offline: Bool)]
    }

    /// A message read back from the stream by its sequence.
    public struct StoredMessage: Sendable {
        public let sequence: UInt64
        public let subject: String
        public let bytes: [UInt8]
        public let msgId: String?
        public let timestampNanos: Int64
    }

    let connection: NATSConnection
    let handle: OpaquePointer
    public let options: Options

    init(connection: NATSConnection, options: Options) throws(NATSError) {
        self.connection = connection
        self.options = options
        var jsOpts = jsOptions()
        try check(jsOptions_Init(&jsOpts), "jsOptions_Init")
        jsOpts.Wait = options.waitMs
        jsOpts.PublishAsync.MaxPending = options.maxPendingAsync
        jsOpts.PublishAsync.StallWait = options.stallWaitMs
        if let onAck = options.onAsyncAck {
            // One small box per context, never released: libnats may call the handler up to the context's end.
            jsOpts.PublishAsync.AckHandlerClosure = Unmanaged.passRetained(AckBox(onAck)).toOpaque()
            jsOpts.PublishAsync.AckHandler = { _, msg, pa, pae, ctx in
                let box = Unmanaged<AckBox>.fromOpaque(ctx!).takeUnretainedValue()
                let id = msg.flatMap { NATSMessage(handle: $0).header("Nats-Msg-Id") }
                if let pa {
                    box.onAck(id, .success(PubAck(sequence: pa.pointee.Sequence, duplicate: pa.pointee.Duplicate)))
                } else if let pae {
                    let text = pae.pointee.ErrText.map { String(cString: $0) }
                    box.onAck(id, .failure(NATSError(status: Int32(pae.pointee.Err.rawValue), operation: "publish",
                                                      text: text, jetStreamCode: Int(pae.pointee.ErrCode.rawValue))))
                }
                natsMsg_Destroy(msg)
            }
        }
        var js: OpaquePointer? = nil
        try check(natsConnection_JetStream(&js, connection.handle, &jsOpts), "natsConnection_JetStream")
        handle = js!
    }

    deinit { jsCtx_Destroy(handle) }

    // MARK: Streams

    /// Creates the stream, or checks that the one there has the same name and subjects (updating the rest).
    public func addStream(_ config: StreamConfig) throws(NATSError) -> StreamInfo {
        let subjects = config.subjects.map { strdup($0) }
        defer { subjects.forEach { free($0) } }
        var subjectList = subjects.map { UnsafePointer<CChar>($0) }
        let name = strdup(config.name)!
        defer { free(name) }
        var cfg = jsStreamConfig()
        try check(jsStreamConfig_Init(&cfg), "jsStreamConfig_Init")
        cfg.Name = UnsafePointer(name)
        cfg.Storage = config.fileStorage ? js_FileStorage : js_MemoryStorage
        cfg.Replicas = Int64(config.replicas)
        cfg.Duplicates = config.duplicateWindowNanos
        cfg.MaxAge = config.maxAgeNanos
        cfg.MaxMsgSize = config.maxMessageBytes
        cfg.DenyDelete = config.denyDeleteAndPurge
        cfg.DenyPurge = config.denyDeleteAndPurge
        var info: UnsafeMutablePointer<jsStreamInfo>? = nil
        var code = jsErrCode(rawValue: 0)
        var s = subjectList.withUnsafeMutableBufferPointer { list -> natsStatus in
            cfg.Subjects = list.baseAddress
            cfg.SubjectsLen = Int32(list.count)
            return js_AddStream(&info, handle, &cfg, nil, &code)
        }
        // 10058: a stream of this name exists. Update it to this configuration (the server refuses changes it
        // cannot make, such as the storage type, with its own clear error).
        if s != NATS_OK, code.rawValue == 10058 {
            code = jsErrCode(rawValue: 0)
            s = subjectList.withUnsafeMutableBufferPointer { list -> natsStatus in
                cfg.Subjects = list.baseAddress
                cfg.SubjectsLen = Int32(list.count)
                return js_UpdateStream(&info, handle, &cfg, nil, &code)
            }
        }
        guard s == NATS_OK, let info else { throw NATSError(s, "create stream \(config.name)", jetStreamCode: code) }
        defer { jsStreamInfo_Destroy(info) }
        return StreamInfo(info.pointee)
    }

    public func streamInfo(_ name: String) throws(NATSError) -> StreamInfo {
        var info: UnsafeMutablePointer<jsStreamInfo>? = nil
        var code = jsErrCode(rawValue: 0)
        let s = js_GetStreamInfo(&info, handle, name, nil, &code)
        guard s == NATS_OK, let info else { throw NATSError(s, "stream info \(name)", jetStreamCode: code) }
        defer { jsStreamInfo_Destroy(info) }
        return StreamInfo(info.pointee)
    }

    public func deleteStream(_ name: String) throws(NATSError) {
        var code = jsErrCode(rawValue: 0)
        let s = js_DeleteStream(handle, name, nil, &code)
        if s != NATS_OK { throw NATSError(s, "delete stream \(name)", jetStreamCode: code) }
    }

    // MARK: Publish

    /// Publishes and waits for the stream's acknowledgement.
    /// - Parameters:
    ///   - msgId: `Nats-Msg-Id`: a second publish with it inside the duplicate window is stored once.
    ///   - expectLastSequence: stored only if the stream's last sequence is this (the stream-wide check, sound
    ///     on replicated streams in 2.9.10, unlike the per-subject one).
    public func publish(_ subject: String, bytes: [UInt8], msgId: String? = nil,
                        expectLastSequence: UInt64? = nil) throws(NATSError) -> PubAck {
        var opts = jsPubOptions()
        try check(jsPubOptions_Init(&opts), "jsPubOptions_Init")
        if let expectLastSequence { opts.ExpectLastSeq = expectLastSequence }
        var ack: UnsafeMutablePointer<jsPubAck>? = nil
        var code = jsErrCode(rawValue: 0)
        let s = withOptionalCString(msgId) { id in
            opts.MsgId = id
            return bytes.withUnsafeBytes {
                js_Publish(&ack, handle, subject, $0.baseAddress, Int32($0.count), &opts, &code)
            }
        }
        guard s == NATS_OK, let ack else { throw NATSError(s, "publish to \(subject)", jetStreamCode: code) }
        defer { jsPubAck_Destroy(ack) }
        return PubAck(sequence: ack.pointee.Sequence, duplicate: ack.pointee.Duplicate)
    }

    /// Publishes without waiting; the outcome reaches `Options.onAsyncAck` with `msgId`.
    /// - Throws: at once when the message cannot even be sent (no connection, too many in flight for too long).
    public func publishAsync(_ subject: String, bytes: [UInt8], msgId: String?) throws(NATSError) {
        var msg: OpaquePointer? = nil
        let created = bytes.withUnsafeBytes { natsMsg_Create(&msg, subject, nil, $0.baseAddress, Int32($0.count)) }
        guard created == NATS_OK, msg != nil else { throw NATSError(created, "natsMsg_Create") }
        if let msgId {
            let s = natsMsgHeader_Set(msg, "Nats-Msg-Id", msgId)
            if s != NATS_OK {
                natsMsg_Destroy(msg)
                throw NATSError(s, "natsMsgHeader_Set")
            }
        }
        // On success libnats owns the message and sets `msg` to nil; on failure it is still ours.
        let s = js_PublishMsgAsync(handle, &msg, nil)
        if s != NATS_OK {
            if msg != nil { natsMsg_Destroy(msg) }
            throw NATSError(s, "publish to \(subject)")
        }
    }

    /// Waits until every asynchronous publish has its outcome.
    public func publishAsyncComplete(timeoutMs: Int64) throws(NATSError) {
        var opts = jsPubOptions()
        try check(jsPubOptions_Init(&opts), "jsPubOptions_Init")
        opts.MaxWait = timeoutMs
        try check(js_PublishAsyncComplete(handle, &opts), "wait for asynchronous publishes")
    }

    /// Takes back every asynchronous publish still waiting for its acknowledgement (a cluster without a quorum
    /// never answers, and they would hold their places in flight for ever); returns how many. An answer that
    /// comes for one later is ignored.
    public func abandonPendingAsync() -> Int {
        var list = natsMsgList()
        guard js_PublishAsyncGetPendingList(&list, handle) == NATS_OK else { return 0 }
        let n = Int(list.Count)
        natsMsgList_Destroy(&list)
        return n
    }

    // MARK: Read

    /// The message stored at `sequence`.
    public func message(stream: String, sequence: UInt64) throws(NATSError) -> StoredMessage {
        var msg: OpaquePointer? = nil
        var code = jsErrCode(rawValue: 0)
        let s = js_GetMsg(&msg, handle, stream, sequence, nil, &code)
        guard s == NATS_OK, let msg else {
            throw NATSError(s, "read \(stream) sequence \(sequence)", jetStreamCode: code)
        }
        defer { natsMsg_Destroy(msg) }
        let m = NATSMessage(handle: msg)
        return StoredMessage(sequence: natsMsg_GetSequence(msg), subject: m.subject, bytes: m.bytes,
                             msgId: m.header("Nats-Msg-Id"), timestampNanos: natsMsg_GetTime(msg))
    }

    /// The last message of `stream` on `subject`, nil when there is none.
    public func lastMessage(stream: String, subject: String) throws(NATSError) -> StoredMessage? {
        var msg: OpaquePointer? = nil
        var code = jsErrCode(rawValue: 0)
        let s = js_GetLastMsg(&msg, handle, stream, subject, nil, &code)
        if s == NATS_NOT_FOUND || code.rawValue == 10037 { return nil }
        guard s == NATS_OK, let msg else {
            throw NATSError(s, "read the last message of \(stream) on \(subject)", jetStreamCode: code)
        }
        defer { natsMsg_Destroy(msg) }
        let m = NATSMessage(handle: msg)
        return StoredMessage(sequence: natsMsg_GetSequence(msg), subject: m.subject, bytes: m.bytes,
                             msgId: m.header("Nats-Msg-Id"), timestampNanos: natsMsg_GetTime(msg))
    }

    /// An ordered consumer: every message of `stream` on `subject` from `startSequence` on, in stream order,
    /// with no gap and no repeat. The library recreates the server-side consumer at the next expected sequence
    /// after a reconnection or a leader change. `handler` runs on the subscription's delivery thread; a message's
    /// `streamPosition` gives its sequence.
    public func subscribeOrdered(stream: String, subject: String, startSequence: UInt64,
                                 handler: @escaping @Sendable (NATSMessage) -> Void) throws(NATSError) -> NATSSubscription {
        var sub: OpaquePointer? = nil
        var code = jsErrCode(rawValue: 0)
        var so = jsSubOptions()
        try check(jsSubOptions_Init(&so), "jsSubOptions_Init")
        so.Ordered = true
        if startSequence > 1 {
            so.Config.DeliverPolicy = js_DeliverByStartSequence
            so.Config.OptStartSeq = startSequence
        }
        let box = HandlerBox(handler)
        let ctx = Unmanaged.passRetained(box).toOpaque()
        let callback: natsMsgHandler = { _, _, msg, ctx in
            guard let msg else { return }
            Unmanaged<HandlerBox>.fromOpaque(ctx!).takeUnretainedValue().handler(NATSMessage(handle: msg))
            natsMsg_Destroy(msg)
        }
        let s = stream.withCString { name in
            so.Stream = name
            return js_Subscribe(&sub, handle, subject, callback, ctx, nil, &so, &code)
        }
        guard s == NATS_OK, let sub else {
            Unmanaged<HandlerBox>.fromOpaque(ctx).release()
            throw NATSError(s, "ordered consumer on \(stream) from \(startSequence)", jetStreamCode: code)
        }
        return try NATSSubscription(sub, context: ctx, pendingLimit: nil, subject: subject)
    }
}

extension JetStream.StreamInfo {
    init(_ info: jsStreamInfo) {
        firstSequence = info.State.FirstSeq
        lastSequence = info.State.LastSeq
        messages = info.State.Msgs
        var leader: String? = nil
        var replicas: [(String, Bool, Bool)] = []
        if let cluster = info.Cluster {
            leader = cluster.pointee.Leader.map { String(cString: $0) }
            for i in 0..<Int(cluster.pointee.ReplicasLen) {
                if let peer = cluster.pointee.Replicas[i] {
                    replicas.append((String(cString: peer.pointee.Name), peer.pointee.Current, peer.pointee.Offline))
                }
            }
        }
        self.leader = leader
        self.replicas = replicas
    }
}

final class AckBox {
    let onAck: @Sendable (String?, Result<JetStream.PubAck, NATSError>) -> Void
    init(_ onAck: @escaping @Sendable (String?, Result<JetStream.PubAck, NATSError>) -> Void) { self.onAck = onAck }
}

func withOptionalCString<R>(_ s: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let s else { return body(nil) }
    return s.withCString { body($0) }
}
