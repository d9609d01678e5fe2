import TickwireCore

/// Writes rows as Apache Arrow IPC, by hand: the schema, dictionary and record batch messages are flatbuffers
/// built by `FlatBuffer` below, the columns plain little-endian buffers (metadata version V5).
///
/// - `.stream`: the IPC streaming format (schema, dictionaries, record batches, end-of-stream marker), for a pipe:
///   `pl.read_ipc_stream`, `pyarrow.ipc.open_stream` (then `.read_pandas()`).
/// - `.file`: the IPC file format ("Feather v2": `ARROW1`, the same messages, a footer indexing them), for
///   random access: `pl.read_ipc`, `pyarrow.ipc.open_file`, DuckDB's arrow extension.
///
/// Column types (`FrameType`): text as dictionary<int8, int16 or int32 (the narrowest for its dictionary), utf8>
/// (one dictionary batch per text column, before the first record batch), timestamp[ns, tz=UTC], decimal(18, 8)
/// (64 bits wide by default, `Decimals`), int64, uint64, uint8, uint16, float64.
public final class ArrowWriter: FrameSink {
    public enum Layout: String, Sendable { case stream, file }
    /// The width of the decimal(18, 8) columns. 64 bits is the narrowest Arrow decimal that holds precision 18:
    /// half the bytes of 128 for the same values (a join's result is two thirds decimals). Arrow's format has it
    /// since Arrow 18 (pyarrow ≥ 18; polars 2.1 and DuckDB 2.0 read it); 128 is for older readers.
    public enum Decimals: Int, Sendable { case bits64 = 64, bits128 = 128 }
    private let out: ByteOutput
    private let layout: Layout
    private let decimals: Decimals
    private let fields: [FrameField]
    private var offset = 0
    private var dictionaryBlocks = [(offset: Int, metadata: Int, body: Int)]()
    private var batchBlocks = [(offset: Int, metadata: Int, body: Int)]()
    /// The schema's custom metadata (key, value): how the run can be repeated (`RunMetadata.keyValues`).
    private let metadata: [(key: String, value: String)]
    /// Two record batch bodies, filled in place in turn: one is built while the other is written
    /// (`ByteOutput.writeBehind`).
    private var bodies: [(bytes: UnsafeMutableRawPointer, capacity: Int)] = (0..<2).map { _ in (.allocate(byteCount: 8, alignment: 64), 8) }
    private var turn = 0
    /// Column storage traded with each batch written: it holds the columns going out behind the caller.
    private var spare: FrameBatch?

    /// Writes the header, schema and dictionaries at once.
    public init(fields: [FrameField], out: ByteOutput, layout: Layout = .stream, decimals: Decimals = .bits64,
                metadata: [(key: String, value: String)] = []) throws {
        self.fields = fields; self.out = out; self.layout = layout; self.decimals = decimals; self.metadata = metadata
        if layout == .file { try emit(Array("ARROW1".utf8) + [0, 0]) }
        try emit(ArrowWriter.message(header: 1, schemaTable(), bodyLength: 0))
        for (i, f) in fields.enumerated() where f.type == .text {
            // A DictionaryBatch: the id (the column's number) and a one-column utf8 record batch of the values.
            var offsets = [Int32](), bytes = [UInt8]()
            offsets.reserveCapacity(f.dictionary.count + 1)
            offsets.append(0)
            for v in f.dictionary { bytes.append(contentsOf: v.utf8); offsets.append(Int32(bytes.count)) }
            var body = Body()
            body.add([UInt8]()); body.add(offsets); body.add(bytes)
            body.node(length: f.dictionary.count, nulls: 0)
            let batch = body.recordBatch(length: f.dictionary.count)
            let meta = ArrowWriter.message(header: 2, .table([.i64(Int64(i)), .offset(batch), .bool(false)]), bodyLength: body.length)
            dictionaryBlocks.append((offset, meta.count, body.length))
            try emit(meta)
            try body.write(to: self)
        }
    }

    public func write(_ batch: FrameBatch) throws {
        let rows = batch.rows
        guard rows > 0 else { return }
        // The layout first (a bitmap only for a column with nulls). The body is then gathered: 8-byte values
        // straight from the batch's columns, everything else (bitmaps, narrowed indices, 128-bit decimals,
        // padding) built in this turn's body memory; the batch's storage goes out behind the caller, who gets
        // the spare's (`FrameBatch.exchangeStorage`). The body's bytes are the same either way.
        var nodes = [UInt8](), buffers = [UInt8]()
        var length = 0
        var shape = [(nulls: Int, bitmap: Int, values: Int, direct: Bool)]()
        shape.reserveCapacity(fields.count)
        var built = 0
        for (c, f) in fields.enumerated() {
            let nulls = batch.nullCount(c)
            let bitmap = nulls > 0 ? (rows + 7) / 8 : 0, values = rows * width(f)
            let direct = width(f) == 8
            shape.append((nulls, bitmap, values, direct))
            built += ArrowWriter.padded(bitmap) + (direct ? 0 : ArrowWriter.padded(values))
        }
        let p = body(built)
        var pieces = [UnsafeRawBufferPointer]()
        var at = 0          // where the next built bytes go in `p`
        var runStart = 0    // the built bytes not yet made a piece start here
        func describe(_ bytes: Int) {
            buffers.appendLE(Int64(length)); buffers.appendLE(Int64(bytes))
            length += ArrowWriter.padded(bytes)
        }
        /// Built bytes: `fill` writes `bytes` at `dst`; the padding after them is zero (the same rows give the
        /// same bytes).
        func build(_ bytes: Int, _ fill: (UnsafeMutableRawPointer) -> Void) {
            fill(p + at)
            (p + at + bytes).initializeMemory(as: UInt8.self, repeating: 0, count: ArrowWriter.padded(bytes) - bytes)
            at += ArrowWriter.padded(bytes)
            describe(bytes)
        }
        for (c, f) in fields.enumerated() {
            nodes.appendLE(Int64(rows)); nodes.appendLE(Int64(shape[c].nulls))
            if shape[c].bitmap > 0 {
                build(shape[c].bitmap) { ArrowWriter.pack(batch.validity(c), into: $0) }
            } else {
                describe(0)
            }
            let v = batch.column(c)
            if shape[c].direct {
                if at > runStart { pieces.append(UnsafeRawBufferPointer(start: p + runStart, count: at - runStart)) }
                runStart = at
                pieces.append(UnsafeRawBufferPointer(v))
                describe(shape[c].values)
                continue
            }
            build(shape[c].values) { dst in
                switch f.type {
                case .text where width(f) == 1:
                    let o = dst.assumingMemoryBound(to: Int8.self)
                    for i in 0..<rows { o[i] = Int8(truncatingIfNeeded: v[i]) }
                case .text where width(f) == 2:
                    let o = dst.assumingMemoryBound(to: Int16.self)
                    for i in 0..<rows { o[i] = Int16(truncatingIfNeeded: v[i]) }
                case .text:
                    let o = dst.assumingMemoryBound(to: Int32.self)
                    for i in 0..<rows { o[i] = Int32(truncatingIfNeeded: v[i]) }
                case .decimal:
                    // 128-bit two's complement, little-endian: the value, then its sign extended.
                    let o = dst.assumingMemoryBound(to: Int64.self)
                    for i in 0..<rows { o[2 &* i] = v[i]; o[2 &* i &+ 1] = v[i] >> 63 }
                case .uint8:
                    let o = dst.assumingMemoryBound(to: UInt8.self)
                    for i in 0..<rows { o[i] = UInt8(truncatingIfNeeded: v[i]) }
                case .uint16:
                    let o = dst.assumingMemoryBound(to: UInt16.self)
                    for i in 0..<rows { o[i] = UInt16(truncatingIfNeeded: v[i]) }
                case .timestamp, .int64, .uint64, .float64:
                    preconditionFailure("8-byte values are written from the batch")
                }
            }
        }
        if at > runStart { pieces.append(UnsafeRawBufferPointer(start: p + runStart, count: at - runStart)) }
        let meta = ArrowWriter.message(header: 3, .table([.i64(Int64(rows)), .offset(.structs(nodes, count: fields.count, align: 8)),
                                                          .offset(.structs(buffers, count: buffers.count / 16, align: 8))]),
                                       bodyLength: length)
        batchBlocks.append((offset, meta.count, length))
        try emit(meta)
        try out.writeBehind(pieces: pieces)
        // The batch's columns are going out: the caller fills the spare's storage meanwhile (the previous piece,
        // written from it, was waited for by `writeBehind`).
        if spare == nil { spare = FrameBatch(batch.fields) }
        batch.exchangeStorage(with: spare!)
        offset += length
        turn ^= 1
    }

    @inline(__always) private static func padded(_ bytes: Int) -> Int { (bytes + 7) & ~7 }

    deinit {
        try? out.settle()   // a body may still be going out (after an error): not freed under the writer
        for b in bodies { b.bytes.deallocate() }
    }

    /// This turn's body memory, at least `bytes` long (its contents unspecified). The other turn's body may be
    /// going out meanwhile; this one's last write was waited for when the other was handed over.
    private func body(_ bytes: Int) -> UnsafeMutableRawPointer {
        if bytes > bodies[turn].capacity {
            bodies[turn].bytes.deallocate()
            bodies[turn].capacity = max(bytes, 2 * bodies[turn].capacity)
            bodies[turn].bytes = .allocate(byteCount: bodies[turn].capacity, alignment: 64)
        }
        return bodies[turn].bytes
    }

    /// Ends the stream (and, for a file, writes the footer) and flushes.
    public func finish() throws {
        try emit([0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0])          // end of stream
        if layout == .file {
            func blocks(_ bs: [(offset: Int, metadata: Int, body: Int)]) -> FlatBuffer.Node {
                var bytes = [UInt8]()
                for b in bs {
                    bytes.appendLE(Int64(b.offset)); bytes.appendLE(Int32(b.metadata)); bytes.appendLE(Int32(0))
                    bytes.appendLE(Int64(b.body))
                }
                return .structs(bytes, count: bs.count, align: 8)
            }
            let footer = FlatBuffer.serialize(.table([
                .i16(4), .offset(schemaTable()), .offset(blocks(dictionaryBlocks)), .offset(blocks(batchBlocks)),
            ]))
            try emit(footer)
            var tail = [UInt8]()
            tail.appendLE(Int32(footer.count))
            try emit(tail + Array("ARROW1".utf8))
        }
        try out.drain()
    }

    fileprivate func emit(_ bytes: UnsafeRawBufferPointer) throws {
        out.buffer.append(contentsOf: bytes)
        offset += bytes.count
        try out.drainIfFull()
    }

    private func emit(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try emit($0) }
    }

    /// Bytes a value of the field takes in a record batch: a text column's dictionary index is the narrowest
    /// signed integer that numbers its dictionary (int8, int16 or int32: a side is one byte, not four).
    private func width(_ f: FrameField) -> Int {
        switch f.type {
        case .text: f.dictionary.count <= Int(Int8.max) + 1 ? 1 : f.dictionary.count <= Int(Int16.max) + 1 ? 2 : 4
        case .decimal: decimals.rawValue / 8
        case .timestamp, .int64, .uint64, .float64: 8
        case .uint8: 1
        case .uint16: 2
        }
    }

    private func schemaTable() -> FlatBuffer.Node {
        let fieldTables = fields.enumerated().map { (i, f) -> FlatBuffer.Node in
            let (type, table): (UInt8, FlatBuffer.Node) = switch f.type {
            case .text: (5, .table([]))
            case .timestamp: (10, .table([.i16(3), .offset(.string("UTC"))]))
            case .decimal: (7, .table([.i32(18), .i32(8), .i32(Int32(decimals.rawValue))]))
            case .int64: (2, .table([.i32(64), .bool(true)]))
            case .uint64: (2, .table([.i32(64), .bool(false)]))
            case .uint8: (2, .table([.i32(8), .bool(false)]))
            case .uint16: (2, .table([.i32(16), .bool(false)]))
            case .float64: (3, .table([.i16(2)]))
            }
            let dictionary: FlatBuffer.Field? = f.type == .text
                ? .offset(.table([.i64(Int64(i)), .offset(.table([.i32(Int32(8 * width(f))), .bool(true)])), .bool(false)])) : nil
            return .table([.offset(.string(f.name)), .bool(f.nullable), .u8(type), .offset(table), dictionary,
                           .offset(.tables([]))])
        }
        let keyValues: FlatBuffer.Field? = metadata.isEmpty ? nil
            : .offset(.tables(metadata.map { .table([.offset(.string($0.key)), .offset(.string($0.value))]) }))
        return .table([.i16(0), .offset(.tables(fieldTables)), keyValues])
    }

    /// An encapsulated message: continuation marker, metadata length, the Message flatbuffer padded to 8.
    static func message(header type: UInt8, _ header: FlatBuffer.Node, bodyLength: Int) -> [UInt8] {
        var fb = FlatBuffer.serialize(.table([.i16(4), .u8(type), .offset(header), .i64(Int64(bodyLength))]))
        while (fb.count + 8) % 8 != 0 { fb.append(0) }
        var out: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF]
        out.appendLE(Int32(fb.count))
        return out + fb
    }

    /// Packs one validity byte per row (1 valid, 0 null) into a bitmap, eight rows a multiply: byte i of the
    /// word lands on bit 56 + i of the product.
    static func pack(_ valid: UnsafeBufferPointer<UInt8>, into p: UnsafeMutableRawPointer) {
        let n = valid.count, whole = n / 8
        let src = UnsafeRawPointer(valid.baseAddress!), bits = p.assumingMemoryBound(to: UInt8.self)
        for i in 0..<whole {
            let x = UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 &* i, as: UInt64.self))
            bits[i] = UInt8(truncatingIfNeeded: (x &* 0x0102_0408_1020_4080) >> 56)
        }
        if whole * 8 < n {
            var last: UInt8 = 0
            for j in (whole * 8)..<n where valid[j] != 0 { last |= 1 << UInt8(j & 7) }
            bits[whole] = last
        }
    }

    /// A dictionary batch body being laid out: its buffers (each padded to 8 bytes, written straight from the arrays
    /// they came in) and field nodes.
    struct Body {
        private var pieces = [(bytes: Int, write: (ArrowWriter) throws -> Void)]()
        private var buffers = [UInt8](), nodes = [UInt8]()
        private var nodeCount = 0
        private(set) var length = 0

        mutating func add<T: FixedWidthInteger>(_ xs: [T]) {
            append(bytes: xs.count * MemoryLayout<T>.size) { w in try xs.withUnsafeBytes { try w.emit($0) } }
        }

        private mutating func append(bytes: Int, _ write: @escaping (ArrowWriter) throws -> Void) {
            buffers.appendLE(Int64(length)); buffers.appendLE(Int64(bytes))
            pieces.append((bytes, write))
            length += (bytes + 7) / 8 * 8
        }

        mutating func node(length: Int, nulls: Int) {
            nodes.appendLE(Int64(length)); nodes.appendLE(Int64(nulls))
            nodeCount += 1
        }

        func recordBatch(length rows: Int) -> FlatBuffer.Node {
            .table([.i64(Int64(rows)), .offset(.structs(nodes, count: nodeCount, align: 8)),
                    .offset(.structs(buffers, count: buffers.count / 16, align: 8))])
        }

        func write(to w: ArrowWriter) throws {
            let zeros = [UInt8](repeating: 0, count: 8)
            for p in pieces {
                try p.write(w)
                let pad = (8 - p.bytes % 8) % 8
                if pad > 0 { try zeros.withUnsafeBytes { try w.emit(UnsafeRawBufferPointer(rebasing: $0[0..<pad])) } }
            }
        }
    }
}

extension Frames {
    /// Stored events as Arrow (`tickwire export`, `tickwire replay --format arrow`).
    /// - Returns: the rows written.
    @discardableResult
    public static func writeArrow(_ reader: StoreReader, _ q: StoreQuery, to out: ByteOutput, layout: ArrowWriter.Layout = .stream,
                                  decimals: ArrowWriter.Decimals = .bits64, metadata: [(key: String, value: String)] = []) throws -> Int {
        try replay(reader, q) { fields in try ArrowWriter(fields: fields, out: out, layout: layout, decimals: decimals, metadata: metadata) }
    }
}

/// A minimal flatbuffer writer, front to back: a table's vtable comes just before it and everything it refers to
/// comes after it, so every unsigned offset points forward as the format requires. Scalars are aligned to their
/// size from the buffer start. Enough for Arrow's schema, message and footer tables.
enum FlatBuffer {
    indirect enum Node: Sendable {
        /// Fields by slot; nil leaves a slot absent (its default applies).
        case table([Field?])
        case string(String)
        case tables([Node])
        /// A vector of structs given as their raw little-endian bytes.
        case structs([UInt8], count: Int, align: Int)
    }

    enum Field: Sendable {
        case u8(UInt8), bool(Bool), i16(Int16), i32(Int32), i64(Int64)
        case offset(Node)
    }

    static func serialize(_ root: Node) -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: 4)
        let at = place(root, &buf)
        patch(&buf, 0, UInt32(at))
        while buf.count % 8 != 0 { buf.append(0) }
        return buf
    }

    private static func pad(_ buf: inout [UInt8], to align: Int, leaving extra: Int = 0) {
        while (buf.count + extra) % align != 0 { buf.append(0) }
    }

    private static func patch(_ buf: inout [UInt8], _ at: Int, _ v: UInt32) {
        withUnsafeBytes(of: v.littleEndian) { for i in 0..<4 { buf[at + i] = $0[i] } }
    }

    /// Writes a node and returns its position (what offsets to it point at).
    private static func place(_ node: Node, _ buf: inout [UInt8]) -> Int {
        switch node {
        case .string(let s):
            pad(&buf, to: 4)
            let at = buf.count
            buf.appendLE(UInt32(s.utf8.count)); buf.append(contentsOf: s.utf8); buf.append(0)
            return at
        case .structs(let bytes, let count, let align):
            pad(&buf, to: max(align, 4), leaving: 4)
            let at = buf.count
            buf.appendLE(UInt32(count)); buf.append(contentsOf: bytes)
            return at
        case .tables(let items):
            pad(&buf, to: 4)
            let at = buf.count
            buf.appendLE(UInt32(items.count))
            let slots = buf.count
            buf.append(contentsOf: repeatElement(0, count: 4 * items.count))
            for (i, item) in items.enumerated() {
                let child = place(item, &buf)
                patch(&buf, slots + 4 * i, UInt32(child - (slots + 4 * i)))
            }
            return at
        case .table(let fields):
            // Lay the inline fields out (largest first keeps them aligned), after the 4-byte vtable offset.
            func size(_ f: Field) -> Int {
                switch f { case .u8, .bool: 1; case .i16: 2; case .i32, .offset: 4; case .i64: 8 }
            }
            let order = fields.indices.filter { fields[$0].map { _ in true } ?? false }.sorted { size(fields[$0]!) > size(fields[$1]!) }
            var layout = [Int: Int](), cursor = 4
            for i in order {
                let s = size(fields[i]!)
                cursor = (cursor + s - 1) / s * s
                layout[i] = cursor
                cursor += s
            }
            let tableSize = (cursor + 3) / 4 * 4
            // vtable: its size, the table's size, each slot's offset in the table (0: absent).
            pad(&buf, to: 2)
            let vtable = buf.count
            buf.appendLE(UInt16(4 + 2 * fields.count)); buf.appendLE(UInt16(tableSize))
            for i in fields.indices { buf.appendLE(UInt16(layout[i] ?? 0)) }
            pad(&buf, to: 8)
            let table = buf.count
            buf.appendLE(Int32(table - vtable))
            buf.append(contentsOf: repeatElement(0, count: tableSize - 4))
            var children = [(Int, Node)]()
            for (i, f) in fields.enumerated() {
                guard let f, let o = layout[i] else { continue }
                let p = table + o
                func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { for k in 0..<$0.count { buf[p + k] = $0[k] } } }
                switch f {
                case .u8(let v): put(v)
                case .bool(let v): put(UInt8(v ? 1 : 0))
                case .i16(let v): put(v)
                case .i32(let v): put(v)
                case .i64(let v): put(v)
                case .offset(let n): children.append((p, n))
                }
            }
            for (p, n) in children {
                let child = place(n, &buf)
                patch(&buf, p, UInt32(child - p))
            }
            return table
        }
    }
}
