import TickwireCore

/// The Thrift compact protocol, as much of it as Parquet's footer and page headers need.
struct ThriftCompact {
    private(set) var bytes = [UInt8]()
    private var lastField: [Int16] = [0]

    enum FieldType: UInt8 { case boolTrue = 1, boolFalse = 2, byte = 3, i16 = 4, i32 = 5, i64 = 6, double = 7, binary = 8, list = 9, `struct` = 12 }

    private mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 { bytes.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }

    private mutating func zigzag(_ v: Int64) { varint(UInt64(bitPattern: (v << 1) ^ (v >> 63))) }

    private mutating func header(_ id: Int16, _ type: FieldType) {
        let delta = id - lastField[lastField.count - 1]
        if delta > 0 && delta <= 15 { bytes.append(UInt8(delta) << 4 | type.rawValue) } else { bytes.append(type.rawValue); zigzag(Int64(id)) }
        lastField[lastField.count - 1] = id
    }

    mutating func i32(_ id: Int16, _ v: Int32) { header(id, .i32); zigzag(Int64(v)) }
    mutating func i64(_ id: Int16, _ v: Int64) { header(id, .i64); zigzag(v) }
    mutating func byte(_ id: Int16, _ v: Int8) { header(id, .byte); bytes.append(UInt8(bitPattern: v)) }
    mutating func bool(_ id: Int16, _ v: Bool) { header(id, v ? .boolTrue : .boolFalse) }
    mutating func string(_ id: Int16, _ s: String) { header(id, .binary); varint(UInt64(s.utf8.count)); bytes.append(contentsOf: s.utf8) }

    /// A struct field; `body` writes its fields.
    mutating func `struct`(_ id: Int16, _ body: (inout ThriftCompact) -> Void) {
        header(id, .struct)
        structBody(body)
    }

    /// A struct's fields and its stop byte (for the top-level struct and list elements).
    mutating func structBody(_ body: (inout ThriftCompact) -> Void) {
        lastField.append(0)
        body(&self)
        bytes.append(0)
        lastField.removeLast()
    }

    private mutating func listHeader(_ id: Int16, _ count: Int, _ type: FieldType) {
        header(id, .list)
        if count < 15 { bytes.append(UInt8(count) << 4 | type.rawValue) } else { bytes.append(0xF0 | type.rawValue); varint(UInt64(count)) }
    }

    mutating func structs<T>(_ id: Int16, _ items: [T], _ body: (inout ThriftCompact, T) -> Void) {
        listHeader(id, items.count, .struct)
        for item in items { structBody { body(&$0, item) } }
    }

    mutating func i32s(_ id: Int16, _ items: [Int32]) {
        listHeader(id, items.count, .i32)
        for v in items { zigzag(Int64(v)) }
    }

    mutating func strings(_ id: Int16, _ items: [String]) {
        listHeader(id, items.count, .binary)
        for s in items { varint(UInt64(s.utf8.count)); bytes.append(contentsOf: s.utf8) }
    }
}

/// Writes one Parquet file by hand: row groups of up to `rowGroupRows` rows, per column one dictionary page
/// (text columns) and one data page (v1) per batch, uncompressed; definition levels and dictionary indices in
/// the RLE/bit-packed hybrid encoding, everything else PLAIN; the footer in the Thrift compact protocol.
/// DuckDB, polars and pyarrow read it.
public final class ParquetFile: FrameSink {
    public static let rowGroupRows = 1 << 20
    private let out: ByteOutput
    private let fields: [FrameField]
    private var offset = 0
    private var rowGroups = [RowGroup]()
    private var totalRows = 0
    /// The row group being gathered: per column its encoded data pages, and for text columns the values'
    /// indices in this row group's dictionary (assigned in order of first use).
    private var pages: [[UInt8]]
    private var pageValues: [Int]
    private var dictionaryRemap: [[Int32]]
    private var dictionaryOrder: [[Int32]]
    private var groupRows = 0

    struct RowGroup {
        var rows: Int
        var columns: [(dictionaryOffset: Int?, dataOffset: Int, size: Int, values: Int)]
    }

    /// The file's key-value metadata (how the run can be repeated: `RunMetadata.keyValues`).
    private let metadata: [(key: String, value: String)]

    public init(path: String, fields: [FrameField], metadata: [(key: String, value: String)] = []) throws(StoreError) {
        out = try ByteOutput(path: path)
        self.fields = fields
        self.metadata = metadata
        pages = Array(repeating: [], count: fields.count)
        pageValues = Array(repeating: 0, count: fields.count)
        dictionaryRemap = fields.map { $0.type == .text ? [Int32](repeating: -1, count: $0.dictionary.count) : [] }
        dictionaryOrder = Array(repeating: [], count: fields.count)
        try emit(Array("PAR1".utf8))
    }

    private func emit(_ bytes: [UInt8]) throws(StoreError) {
        out.buffer.append(contentsOf: bytes)
        offset += bytes.count
        try out.drainIfFull()
    }

    public func write(_ batch: FrameBatch) throws {
        guard batch.rows > 0 else { return }
        for (c, f) in fields.enumerated() {
            var levels = [UInt8]()
            let v = batch.column(c)
            var present = Array(v)
            if f.nullable {
                let valid = batch.validity(c)
                var encoded = [UInt8]()
                ParquetFile.hybrid(valid.map { Int32($0) }, bitWidth: 1, into: &encoded)
                levels.appendLE(UInt32(encoded.count))
                levels += encoded
                present = zip(v, valid).compactMap { $1 != 0 ? $0 : nil }
            }
            var data = [UInt8]()
            switch f.type {
            case .text:
                var ids = [Int32]()
                ids.reserveCapacity(present.count)
                for x in present {
                    var id = dictionaryRemap[c][Int(x)]
                    if id < 0 {
                        id = Int32(dictionaryOrder[c].count)
                        dictionaryRemap[c][Int(x)] = id
                        dictionaryOrder[c].append(Int32(x))
                    }
                    ids.append(id)
                }
                // Indices are written against the dictionary as it stands; it only grows within the row group.
                let width = ParquetFile.bitWidth(max(1, fields[c].dictionary.count) - 1)
                data.append(UInt8(width))
                ParquetFile.hybrid(ids, bitWidth: width, into: &data)
            case .timestamp, .decimal, .int64, .uint64, .float64:
                present.withUnsafeBytes { data.append(contentsOf: $0) }
            case .uint8, .uint16:
                for x in present { data.appendLE(Int32(truncatingIfNeeded: x)) }
            }
            let body = levels + data
            var h = ThriftCompact()
            h.structBody { h in
                h.i32(1, 0)                                        // DATA_PAGE
                h.i32(2, Int32(body.count)); h.i32(3, Int32(body.count))
                h.struct(5) { d in
                    d.i32(1, Int32(batch.rows))
                    d.i32(2, f.type == .text ? 8 : 0)              // RLE_DICTIONARY or PLAIN
                    d.i32(3, 3); d.i32(4, 3)                       // levels: RLE
                }
            }
            pages[c] += h.bytes
            pages[c] += body
            pageValues[c] += batch.rows
        }
        groupRows += batch.rows
        if groupRows >= ParquetFile.rowGroupRows { try flushRowGroup() }
    }

    /// Writes the row group gathered so far: per column its dictionary page, then its data pages.
    private func flushRowGroup() throws(StoreError) {
        guard groupRows > 0 else { return }
        var group = RowGroup(rows: groupRows, columns: [])
        for (c, f) in fields.enumerated() {
            let start = offset
            var dictionaryOffset: Int?
            if f.type == .text {
                var plain = [UInt8]()
                for x in dictionaryOrder[c] {
                    let s = f.dictionary[Int(x)]
                    plain.appendLE(UInt32(s.utf8.count)); plain.append(contentsOf: s.utf8)
                }
                var h = ThriftCompact()
                h.structBody { h in
                    h.i32(1, 2)                                    // DICTIONARY_PAGE
                    h.i32(2, Int32(plain.count)); h.i32(3, Int32(plain.count))
                    h.struct(7) { d in d.i32(1, Int32(dictionaryOrder[c].count)); d.i32(2, 0) }   // PLAIN
                }
                dictionaryOffset = offset
                try emit(h.bytes + plain)
                for x in dictionaryOrder[c] { dictionaryRemap[c][Int(x)] = -1 }
                dictionaryOrder[c].removeAll()
            }
            let dataOffset = offset
            try emit(pages[c])
            group.columns.append((dictionaryOffset, dataOffset, offset - start, pageValues[c]))
            pages[c].removeAll(keepingCapacity: true)
            pageValues[c] = 0
        }
        rowGroups.append(group)
        totalRows += groupRows
        groupRows = 0
    }

    public func finish() throws {
        try flushRowGroup()
        var m = ThriftCompact()
        m.structBody { m in
            m.i32(1, 1)
            var schema: [FrameField?] = [nil]
            schema += fields.map { Optional($0) }
            m.structs(2, schema) { e, f in
                guard let f else { e.string(4, "schema"); e.i32(5, Int32(fields.count)); return }
                ParquetFile.schemaElement(f, &e)
            }
            m.i64(3, Int64(totalRows))
            m.structs(4, rowGroups) { g, group in
                g.structs(1, Array(zip(fields, group.columns))) { cc, pair in
                    let (f, col) = pair
                    cc.i64(2, Int64(col.dictionaryOffset ?? col.dataOffset))
                    cc.struct(3) { md in
                        md.i32(1, ParquetFile.physicalType(f.type))
                        md.i32s(2, f.type == .text ? [0, 3, 8] : [0, 3])      // PLAIN, RLE, RLE_DICTIONARY
                        md.strings(3, [f.name])
                        md.i32(4, 0)                                          // UNCOMPRESSED
                        md.i64(5, Int64(col.values))
                        md.i64(6, Int64(col.size)); md.i64(7, Int64(col.size))
                        md.i64(9, Int64(col.dataOffset))
                        if let d = col.dictionaryOffset { md.i64(11, Int64(d)) }
                    }
                }
                g.i64(2, Int64(group.columns.reduce(0) { $0 + $1.size }))
                g.i64(3, Int64(group.rows))
            }
            if !metadata.isEmpty { m.structs(5, metadata) { kv, p in kv.string(1, p.key); kv.string(2, p.value) } }
            m.string(6, "tickwire")
        }
        try emit(m.bytes)
        var tail = [UInt8]()
        tail.appendLE(UInt32(m.bytes.count))
        try emit(tail + Array("PAR1".utf8))
        try out.drain()
    }

    /// Parquet's physical type: INT32 1, INT64 2, DOUBLE 5, BYTE_ARRAY 6.
    static func physicalType(_ t: FrameType) -> Int32 {
        switch t {
        case .text: 6
        case .timestamp, .decimal, .int64, .uint64: 2
        case .uint8, .uint16: 1
        case .float64: 5
        }
    }

    static func schemaElement(_ f: FrameField, _ e: inout ThriftCompact) {
        e.i32(1, physicalType(f.type))
        e.i32(3, f.nullable ? 1 : 0)                               // OPTIONAL or REQUIRED
        e.string(4, f.name)
        func int(_ bits: Int8, signed: Bool) { e.struct(10) { l in l.struct(10) { i in i.byte(1, bits); i.bool(2, signed) } } }
        switch f.type {
        case .text:
            e.i32(6, 0)                                            // UTF8
            e.struct(10) { l in l.struct(1) { _ in } }             // STRING
        case .timestamp:
            e.struct(10) { l in l.struct(8) { ts in ts.bool(1, true); ts.struct(2) { u in u.struct(3) { _ in } } } }   // UTC, NANOS
        case .decimal:
            e.i32(6, 5); e.i32(7, 8); e.i32(8, 18)                 // DECIMAL, scale, precision
            e.struct(10) { l in l.struct(5) { d in d.i32(1, 8); d.i32(2, 18) } }
        case .int64: e.i32(6, 18); int(64, signed: true)
        case .uint64: e.i32(6, 14); int(64, signed: false)
        case .uint8: e.i32(6, 11); int(8, signed: false)
        case .uint16: e.i32(6, 12); int(16, signed: false)
        case .float64: break
        }
    }

    static func bitWidth(_ maxValue: Int) -> Int {
        var w = 0
        while (1 << w) <= maxValue { w += 1 }
        return max(1, w)
    }

    /// The RLE/bit-packed hybrid: runs of eight or more equal values as RLE runs, the rest bit-packed in groups
    /// of eight (the last group padded with zeros; readers stop at the page's value count).
    static func hybrid(_ values: [Int32], bitWidth: Int, into out: inout [UInt8]) {
        func varint(_ v: Int) {
            var v = UInt64(v)
            while v >= 0x80 { out.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
            out.append(UInt8(v))
        }
        let valueBytes = (bitWidth + 7) / 8
        var i = 0
        var packStart = 0
        func flushPacked(upTo end: Int) {
            // Bit-pack values[packStart..<end], padded to a multiple of eight; `end` is a multiple of eight
            // after packStart unless it is the last run.
            guard end > packStart else { return }
            let groups = (end - packStart + 7) / 8
            varint(groups << 1 | 1)
            var acc: UInt64 = 0, bits = 0
            for k in 0..<(groups * 8) {
                let v = packStart + k < end ? UInt64(UInt32(bitPattern: values[packStart + k])) : 0
                acc |= v << UInt64(bits)
                bits += bitWidth
                while bits >= 8 { out.append(UInt8(acc & 0xFF)); acc >>= 8; bits -= 8 }
            }
            if bits > 0 { out.append(UInt8(acc & 0xFF)) }
        }
        while i < values.count {
            var j = i + 1
            while j < values.count && values[j] == values[i] { j += 1 }
            // An RLE run may start only where the bit-packed values so far fill whole groups of eight.
            let aligned = i + (8 - (i - packStart) % 8) % 8
            if j - aligned >= 8 {
                flushPacked(upTo: aligned)
                varint((j - aligned) << 1)
                var v = UInt32(bitPattern: values[i])
                for _ in 0..<valueBytes { out.append(UInt8(v & 0xFF)); v >>= 8 }
                packStart = j
            }
            i = j
        }
        flushPacked(upTo: values.count)
    }
}

/// A hive-partitioned Parquet dataset: `date=YYYY-MM-DD/venue=V/part-0.parquet` under a directory, one file per
/// store partition (venue: `XNAS` for `MD.XNAS`, the root itself for other roots such as `ALERT`), holding the
/// event columns of `Frames.eventFields` in replay order. `date` and `venue` are in the paths only.
public enum ParquetExport {
    /// - Returns: the rows written and the files, in the order written.
    /// - Throws: `StoreError.io` when the directory exists and is not empty, or a file cannot be written.
    @discardableResult
    public static func write(_ reader: StoreReader, _ q: StoreQuery, toDirectory dir: String,
                             metadata: [(key: String, value: String)] = []) throws -> (rows: Int, files: [String]) {
        if FS.isDirectory(dir), !FS.list(dir).isEmpty {
            throw StoreError.io(operation: "export into (not empty)", path: dir, errno: EEXIST)
        }
        let subjects = try Frames.subjects(reader, q)
        // Each subject's venue, as a number into `venues`.
        var venues = [String](), venueNumbers = [String: Int]()
        let venueOf = subjects.map { s -> Int in
            let root = Layout.root(ofSubject: s)
            let venue = root.hasPrefix("MD.") ? String(root.dropFirst(3)) : root
            if let v = venueNumbers[venue] { return v }
            venueNumbers[venue] = venues.count
            venues.append(venue)
            return venues.count - 1
        }
        let fields = Frames.eventFields(subjects: subjects)
        // Rows come day by day: the files of a day (one per venue) are finished when the next day starts.
        var open = [(file: ParquetFile, batch: FrameBatch)?](repeating: nil, count: venues.count)
        var files = [String](), rows = 0, day: Int64 = .min
        func closeAll() throws {
            for v in open.indices.sorted(by: { venues[$0] < venues[$1] }) {
                guard let w = open[v] else { continue }
                if w.batch.rows > 0 { try w.file.write(w.batch); w.batch.removeAll() }
                try w.file.finish()
                open[v] = nil
            }
        }
        try Frames.forEachRow(reader, q, subjects: subjects) { row, subject in
            let d = Layout.day(of: row.pointee.eventTime)
            if d != day { try closeAll(); day = d }
            let v = venueOf[Int(subject)]
            if open[v] == nil {
                let partition = dir + "/date=\(Layout.dateText(day: d))/venue=\(venues[v])"
                try FS.makeDirectories(partition)
                open[v] = (try ParquetFile(path: partition + "/part-0.parquet", fields: fields, metadata: metadata), FrameBatch(fields))
                files.append(partition + "/part-0.parquet")
            }
            Frames.appendEvent(row, subject: subject, to: open[v]!.batch)
            rows += 1
            if open[v]!.batch.isFull {
                try open[v]!.file.write(open[v]!.batch)
                open[v]!.batch.removeAll()
            }
        }
        try closeAll()
        return (rows, files)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
