import TickwireCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An open partition's append log being written: events are staged in a block buffer and written (one
/// `writev`) when the block fills or the writer flushes. Owned by one `StoreWriter`; not thread-safe.
final class OpenPartition {
    let key: PartitionKey
    let directory: String
    let generation: UInt64
    let file: OwnedFile
    let blockEvents: Int
    // Per-event state, used by the one writer thread: not checked for exclusivity at run time.
    /// Global `SubjectID` -> log-local id + 1 (0: not yet defined in this log).
    @exclusivity(unchecked) var localOf: [UInt32] = []
    var localCount: UInt32 = 0
    var pendingDefinitions: [UInt8] = []
    let buffer: UnsafeMutableRawPointer
    @exclusivity(unchecked) var staged = 0
    var unsynced = false
    /// Bytes of the whole blocks in the log: where the next block goes.
    private(set) var logEnd = 0
    /// A failed write left bytes after `logEnd` that are not cut yet: no block is written until they are.
    private var needsCut = false
    /// Bytes of a torn tail cut when this log was recovered.
    private(set) var tornBytesCut = 0
    /// Events written to this log by this writer.
    private(set) var logEvents = 0
    /// Live logs of older generations when this one was opened (closed: no writer appends to them).
    let earlierLogs: [UInt64]

    /// Opens (or continues) the partition's live log. A log left by an earlier run is recovered first: a torn
    /// tail (nothing valid after it) is cut; a log damaged before intact blocks is kept whole in the store's
    /// `quarantine/` and replaced by its intact blocks (nothing after damage is ever cut). Its subjects are re-read
    /// so new events keep using their ids.
    /// - Parameters:
    ///   - store: the store's root; the partition is `store/DATE/ROOT`.
    ///   - report: told of a torn tail cut or a log quarantined.
    ///   - fresh: start a new log (a generation above every one on disk and `above`) instead of continuing the
    ///     newest: how a writer whose closed logs a sealer may be reading opens a partition. Nothing is cleaned
    ///     up then (the sealer's temporaries are its own).
    init(key: PartitionKey, store: String, subjects: SubjectTable, blockEvents: Int, fresh: Bool = false,
         above: UInt64 = 0, report: (StoreIncident) -> Void) throws(StoreError) {
        self.key = key
        directory = store + "/" + key.relativePath
        self.blockEvents = blockEvents
        try FS.makeDirectories(directory)
        let files = fresh ? Layout.inspect(directory) : try Layout.cleanUp(directory)
        let existing = fresh ? nil : files.liveLogs.last
        let generation = existing ?? max(files.nextGeneration, above + 1)
        self.generation = generation
        earlierLogs = files.liveLogs.filter { $0 < generation }
        let path = directory + "/" + Layout.logName(generation)
        var logSubjects = [String]()
        if existing != nil {
            // The events are read only when damage means rewriting the log around it.
            var contents = try AppendLog.read(path: path, keepEvents: false)
            if !contents.damage.isEmpty {
                contents = try AppendLog.read(path: path)
                let kept = try Quarantine.replaceByIntactBlocks(log: path, contents, store: store, key: key,
                                                                blockEvents: blockEvents)
                logSubjects = kept.subjects
                report(.quarantined(path: path, damage: contents.damage, copy: kept.copy))
            } else {
                if contents.tornBytes > 0 {
                    let log = try OwnedFile(path: path, flags: O_WRONLY)
                    try log.truncate(to: contents.validBytes)
                    try log.syncData()
                    tornBytesCut = contents.tornBytes
                    report(.tornTailCut(path: path, offset: contents.validBytes, bytes: contents.tornBytes,
                                        reason: contents.tornReason ?? ""))
                }
                logSubjects = contents.subjects
            }
        }
        file = try OwnedFile(path: path, flags: O_WRONLY | O_CREAT)
        if existing == nil { try FS.syncDirectory(directory) }
        buffer = .allocate(byteCount: blockEvents * AppendLog.eventSize, alignment: 64)
        for text in logSubjects {
            let global = subjects.intern(text: text)
            setLocal(global, localCount + 1)
            localCount += 1
        }
        logEnd = try file.size()
        try file.seek(to: logEnd)
    }

    deinit { buffer.deallocate() }

    private func setLocal(_ global: SubjectID, _ value: UInt32) {
        if Int(global) >= localOf.count { localOf.append(contentsOf: repeatElement(0, count: Int(global) + 1 - localOf.count)) }
        localOf[Int(global)] = value
    }

    /// Stages one event. - Returns: whether the block is now full (the caller writes it with `writeBlock`).
    @inline(__always)
    func stage(_ e: Event, subjects: SubjectTable) -> Bool {
        var local: UInt32
        if Int(e.subjectID) < localOf.count, localOf[Int(e.subjectID)] != 0 {
            local = localOf[Int(e.subjectID)] - 1
        } else {
            local = define(e.subjectID, subjects: subjects)
        }
        AppendLog.encodeEvent(e, subject: local, at: buffer + staged &* AppendLog.eventSize)
        staged &+= 1
        return staged == blockEvents
    }

    private func define(_ global: SubjectID, subjects: SubjectTable) -> UInt32 {
        let text = subjects.entry(global)
        let local = localCount
        localCount += 1
        setLocal(global, local + 1)
        AppendLog.appendDefinition(local, text, to: &pendingDefinitions)
        return local
    }

    /// Writes the staged events as one block (nothing when none are staged) at `logEnd`.
    ///
    /// A write that fails (a full disk) may have put part of the block in the file: it is cut back to `logEnd`
    /// (`ftruncate`) before anything else is written, so a later block never lands behind a partial one. The
    /// staged events and definitions are left as they were; the caller drops the events (`dropStaged`).
    /// - Throws: `StoreError.io` from the cut or the write.
    func writeBlock() throws(StoreError) {
        guard staged > 0 || !pendingDefinitions.isEmpty else { return }
        if needsCut { try cutBack() }
        let events = UnsafeRawBufferPointer(start: buffer, count: staged * AppendLog.eventSize)
        let padding = (8 - pendingDefinitions.count % 8) % 8
        let r: Result<Void, StoreError> = pendingDefinitions.withUnsafeBytes { d in
            let header = AppendLog.blockHeader(definitions: d, events: events, count: staged)
            return header.withUnsafeBytes { h in
                AppendLog.zeroPadding.withUnsafeBytes { z in
                    do {
                        try file.writeAll([h, d, UnsafeRawBufferPointer(rebasing: z[0..<padding]), events])
                        return .success(())
                    } catch { return .failure(error as! StoreError) }
                }
            }
        }
        if case .failure(let error) = r {
            needsCut = true
            // If the cut fails too, `needsCut` stays set and the next write tries it first; the write's error is
            // the one to report.
            try? cutBack()
            throw error
        }
        logEnd += AppendLog.headerSize + pendingDefinitions.count + padding + events.count
        logEvents += staged
        staged = 0
        pendingDefinitions.removeAll(keepingCapacity: true)
        unsynced = true
    }

    /// Cuts the log back to its last whole block and moves the write position there.
    private func cutBack() throws(StoreError) {
        try file.truncate(to: logEnd)
        try file.seek(to: logEnd)
        needsCut = false
    }

    /// Drops the staged events (a block that could not be written), calling `body` with each one's ring
    /// sequence and event time. Subject definitions stay pending: the log-local ids already handed out stay
    /// valid, and the next block written defines them.
    func dropStaged(_ body: (_ seq: UInt64, _ eventTime: Int64) -> Void) {
        for i in 0..<staged {
            let p = UnsafeRawPointer(buffer + i &* AppendLog.eventSize)
            body(UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 24, as: UInt64.self)),
                 Int64(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: Int64.self)))
        }
        staged = 0
    }

    /// Forces the blocks written to the device (the corresponding C function is `fdatasync`).
    func sync() throws(StoreError) {
        if unsynced { try file.syncData(); unsynced = false }
    }
}
