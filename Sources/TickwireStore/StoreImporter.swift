import TickwireCore

/// Loads a capture straight into the store, without a daemon: drives any `EventSource` (ITCH, tardis CSV,
/// LOBSTER…) into a `StoreWriter`, then flushes and seals what it wrote.
public enum StoreImporter {
    public struct Report: Sendable, Equatable {
        public var events: UInt64
        /// The partitions sealed (every partition the import touched, and any left open before it).
        public var sealed: [PartitionKey]
    }

    /// - Parameters:
    ///   - source: the capture; it interns its subjects in `subjects`.
    ///   - directory: the store's root (`<data>/store`).
    ///   - seal: seal the partitions afterwards (the default); false leaves them open, as a daemon would.
    /// - Throws: the source's error, or `StoreError` from writing; what was appended before is flushed.
    @discardableResult
    public static func importEvents(from source: EventSource, directory: String, subjects: SubjectTable = SubjectTable(),
                                    seal: Bool = true, stop: StopSignal = StopSignal()) throws -> Report {
        let writer = try StoreWriter(directory: directory, subjects: subjects)
        let sink = WriterSink(writer: writer, stop: stop)
        var sourceError: Error?
        do { try source.run(into: sink, stop: stop) } catch { sourceError = error }
        try writer.flush()
        if let e = sink.error { throw e }
        if let e = sourceError { throw e }
        let sealed = seal ? try writer.seal() : []
        try writer.close()
        return Report(events: writer.appended, sealed: sealed)
    }

    /// Appends what a source emits; the first write error stops the source and is rethrown after it returns.
    final class WriterSink: EventSink {
        let writer: StoreWriter
        let stop: StopSignal
        var error: StoreError?
        var subjects: SubjectTable { writer.subjects }

        init(writer: StoreWriter, stop: StopSignal) { self.writer = writer; self.stop = stop }

        func emit(_ event: Event) {
            guard error == nil else { return }
            do { try writer.append(event) } catch { self.error = error; stop.raise() }
        }
    }
}
