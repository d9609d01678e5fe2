import TickwireCore

/// Writes events to an Apache Arrow IPC file (the "Feather v2" file format), by hand: the schema and record
/// batches are flatbuffers built by `FlatBuffer` below, the columns plain little-endian buffers. DuckDB, polars,
/// pandas (pyarrow) and Spark read it directly.
///
/// Columns: `subject` utf8, `kind` utf8, `event_time` and `known_time` timestamp[ns, tz=UTC], `flags` uint8,
/// `source` uint16, `a`, `b`, `c`, `d` int64 (the event's payload words, e8 fixed point; meaning by kind).
/// Rows are in replay order, as known at the query's K, in batches of up to 65,536.
public enum ArrowExport {
    public static let batchRows = 65_536

    /// - Returns: the rows written.
    /// - Throws: `StoreError` from the store or the output file.
    @discardableResult
    public static func write(_ reader: StoreReader, _ q: StoreQuery, to path: String) throws -> Int {
        let out = try ByteOutput(path: path)
        var offset = 0
        func emit(_ bytes: [UInt8]) throws {
            out.buffer.append(contentsOf: bytes)
            offset += bytes.count
            try out.drainIfFull()
        }
        try emit(Array("ARROW1".utf8) + [0, 0])
        let schema = schemaTable()
        try emit(message(header: 1, schema, bodyLength: 0))
        var blocks = [(offset: Int, metadata: Int, body: Int)]()
        var batch = Batch()
        var total = 0
        func flushBatch() throws {
            guard batch.rows > 0 else { return }
            let (meta, body) = batch.encode()
            blocks.append((offset, meta.count, body.count))
            try emit(meta)
            try emit(body)
            total += batch.rows
            batch = Batch()
        }
        try reader.replay(q) { stored in
            batch.append(stored)
            if batch.rows == batchRows { try flushBatch() }
        }
        try flushBatch()
        try emit([0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0])          // end of stream
        // Footer: version, schema, dictionaries (none), record batch blocks.
        var blockBytes = [UInt8]()
        for b in blocks {
            blockBytes.appendLE(Int64(b.offset)); blockBytes.appendLE(Int32(b.metadata)); blockBytes.appendLE(Int32(0))
            blockBytes.appendLE(Int64(b.body))
        }
        let footer = FlatBuffer.serialize(.table([
            .i16(4), .offset(schema), .offset(.structs([], count: 0, align: 8)),
            .offset(.structs(blockBytes, count: blocks.count, align: 8)),
        ]))
        try emit(footer)
        var tail = [UInt8]()
        tail.appendLE(Int32(footer.count))
        try emit(tail + Array("ARROW1".utf8))
        try out.drain()
        return total
    }

    static let columns: [(name: String, type: UInt8, typeTable: FlatBuffer.Node)] = [
        ("subject", 5, .table([])),
        ("kind", 5, .table([])),
        ("event_time", 10, .table([.i16(3), .offset(.string("UTC"))])),
        ("known_time", 10, .table([.i16(3), .offset(.string("UTC"))])),
        ("flags", 2, .table([.i32(8), .bool(false)])),
        ("source", 2, .table([.i32(16), .bool(false)])),
        ("a", 2, .table([.i32(64), .bool(true)])),
        ("b", 2, .table([.i32(64), .bool(true)])),
        ("c", 2, .table([.i32(64), .bool(true)])),
        ("d", 2, .table([.i32(64), .bool(true)])),
    ]

    static func schemaTable() -> FlatBuffer.Node {
        let fields = columns.map { c in
            FlatBuffer.Node.table([.offset(.string(c.name)), .bool(false), .u8(c.type), .offset(c.typeTable),
                                   nil, .offset(.tables([]))])
        }
        return .table([.i16(0), .offset(.tables(fields))])
    }

    /// An encapsulated message: continuation marker, metadata length, the Message flatbuffer padded to 8.
    static func message(header type: UInt8, _ header: FlatBuffer.Node, bodyLength: Int) -> [UInt8] {
        var fb = FlatBuffer.serialize(.table([.i16(4), .u8(type), .offset(header), .i64(Int64(bodyLength))]))
        while (fb.count + 8) % 8 != 0 { fb.append(0) }
        var out: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF]
        out.appendLE(Int32(fb.count))
        return out + fb
    }

    /// One record batch being filled.
    struct Batch {
        var rows = 0
        var subjectOffsets: [Int32] = [0], subjectBytes = [UInt8]()
        var kindOffsets: [Int32] = [0], kindBytes = [UInt8]()
        var eventTime = [Int64](), knownTime = [Int64](), flags = [UInt8](), source = [UInt16]()
        var a = [Int64](), b = [Int64](), c = [Int64](), d = [Int64]()

        mutating func append(_ s: StoredEvent) {
            subjectBytes.append(contentsOf: s.subject.utf8); subjectOffsets.append(Int32(subjectBytes.count))
            kindBytes.append(contentsOf: s.event.kind.name.utf8); kindOffsets.append(Int32(kindBytes.count))
            eventTime.append(s.event.eventTime.rawValue); knownTime.append(s.event.knownTime.rawValue)
            flags.append(s.event.flags); source.append(s.event.source)
            a.append(s.event.a); b.append(s.event.b); c.append(s.event.c); d.append(s.event.d)
            rows += 1
        }

        /// The RecordBatch message and its body: per column a validity buffer (empty: no nulls), then offsets and
        /// data (utf8) or values, each padded to 8 bytes.
        func encode() -> (metadata: [UInt8], body: [UInt8]) {
            var body = [UInt8](), buffers = [UInt8](), nodes = [UInt8]()
            func add(_ bytes: [UInt8]) {
                buffers.appendLE(Int64(body.count)); buffers.appendLE(Int64(bytes.count))
                body.append(contentsOf: bytes)
                while body.count % 8 != 0 { body.append(0) }
            }
            func raw<T: FixedWidthInteger>(_ xs: [T]) -> [UInt8] {
                var out = [UInt8](); out.reserveCapacity(xs.count * MemoryLayout<T>.size)
                for x in xs { out.appendLE(x) }
                return out
            }
            for _ in ArrowExport.columns { nodes.appendLE(Int64(rows)); nodes.appendLE(Int64(0)) }
            add([]); add(raw(subjectOffsets)); add(subjectBytes)
            add([]); add(raw(kindOffsets)); add(kindBytes)
            for col in [eventTime, knownTime] { add([]); add(raw(col)) }
            add([]); add(flags)
            add([]); add(raw(source))
            for col in [a, b, c, d] { add([]); add(raw(col)) }
            let header = FlatBuffer.Node.table([
                .i64(Int64(rows)),
                .offset(.structs(nodes, count: ArrowExport.columns.count, align: 8)),
                .offset(.structs(buffers, count: buffers.count / 16, align: 8)),
            ])
            return (ArrowExport.message(header: 3, header, bodyLength: body.count), body)
        }
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
