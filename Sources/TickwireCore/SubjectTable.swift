import Synchronization

/// Interns subject texts as small integers so ring slots stay 64 bytes and reference-free.
///
/// Inserting takes a lock (it happens once per new subject); looking an id up is lock-free: entries are
/// written once into preallocated chunks and published with a release store of the count.
public final class SubjectTable: @unchecked Sendable {
    public static let chunkSize = 1024
    public static let maxChunks = 4096   // 4M subjects

    /// Each entry: the subject's UTF-8 bytes, owned by the table until it is freed.
    private let chunks: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeRawBufferPointer>?>
    private let published = Atomic<UInt32>(0)
    private let writer = Locked<[String: SubjectID]>([:])

    public init() {
        chunks = .allocate(capacity: SubjectTable.maxChunks)
        chunks.initialize(repeating: nil, count: SubjectTable.maxChunks)
    }

    deinit {
        let n = Int(published.load(ordering: .acquiring))
        for id in 0..<n { UnsafeMutableRawBufferPointer(mutating: entry(SubjectID(id))).deallocate() }
        for c in 0..<SubjectTable.maxChunks { chunks[c]?.deallocate() }
        chunks.deallocate()
    }

    /// How many subjects are interned.
    public var count: Int { Int(published.load(ordering: .acquiring)) }

    /// The id of `subject`, interning it on first sight.
    public func intern(_ subject: Subject) -> SubjectID { intern(text: subject.text) }

    /// Interns text already known to be a valid subject.
    public func intern(text: String) -> SubjectID {
        writer.withLock { map in
            if let id = map[text] { return id }
            let id = published.load(ordering: .relaxed)
            precondition(Int(id) < SubjectTable.chunkSize * SubjectTable.maxChunks, "subject table full")
            let c = Int(id) / SubjectTable.chunkSize
            if chunks[c] == nil {
                let chunk = UnsafeMutablePointer<UnsafeRawBufferPointer>.allocate(capacity: SubjectTable.chunkSize)
                chunks[c] = chunk
            }
            let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, text.utf8.count), alignment: 1)
            _ = bytes.initializeMemory(as: UInt8.self, from: text.utf8)
            (chunks[c]! + Int(id) % SubjectTable.chunkSize).initialize(to: UnsafeRawBufferPointer(start: bytes.baseAddress, count: text.utf8.count))
            map[text] = id
            published.store(id + 1, ordering: .releasing)
            return id
        }
    }

    /// The id of a text if interned.
    public func lookup(_ text: String) -> SubjectID? { writer.withLock { $0[text] } }

    /// The subject's bytes. - warning: valid for the table's lifetime; never write through them.
    @inline(__always)
    public func entry(_ id: SubjectID) -> UnsafeRawBufferPointer {
        precondition(id < published.load(ordering: .acquiring), "unknown subject id \(id)")
        return chunks[Int(id) / SubjectTable.chunkSize]![Int(id) % SubjectTable.chunkSize]
    }

    public func text(_ id: SubjectID) -> String { String(decoding: entry(id), as: UTF8.self) }
}
