// A small ONNX ModelProto builder over onnx-buf (generated protobuf types). Large tensors are
// declared as external data, each under its own key, and handed to onnxruntime separately, so the
// serialized graph stays small whatever the model size.
import { create, toBinary } from '@bufbuild/protobuf'
import {
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  GraphProtoSchema,
  ModelProtoSchema,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  StringStringEntryProtoSchema,
  TensorProto_DataLocation,
  TensorProtoSchema,
  TypeProtoSchema,
  ValueInfoProtoSchema,
  type AttributeProto,
  type GraphProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from 'onnx-buf'

export type ElemType = 'float32' | 'float16' | 'bfloat16' | 'int64' | 'int32' | 'bool'
const ELEM: Record<ElemType, number> = { float32: 1, float16: 10, bfloat16: 16, int64: 7, int32: 6, bool: 9 }

/** A float attribute whose value happens to be an integer (e.g. alpha = 1). */
export interface FloatAttr { f: number }
export type AttrValue = number | number[] | string | FloatAttr | GraphProto
export type Dim = number | string

export const OPSET = 21

export class GraphBuilder {
  private nodes: NodeProto[] = []
  private inits: TensorProto[] = []
  private inputs: ValueInfoProto[] = []
  private outputs: ValueInfoProto[] = []
  private counter = 0
  private constCache = new Map<string, string>()
  /** External data blobs by key, in the order they were declared. */
  readonly external: Map<string, Uint8Array>
  /** The outermost graph: a subgraph's names, constants and initializers live there. */
  private readonly root: GraphBuilder

  constructor(readonly name: string, parent?: GraphBuilder) {
    this.root = parent ? parent.root : this
    this.external = this.root === this ? new Map() : this.root.external
  }

  /**
   * A builder for a control-flow body (If / Loop branch). Its nodes stay in the subgraph; names,
   * constants and initializers are the root graph's, which the body reads as outer-scope values
   * (except bodyFileInitializer's).
   */
  subgraph(name: string): GraphBuilder {
    return new GraphBuilder(name, this)
  }

  /** This builder's nodes as a body graph taking its `input`s (a Loop body's) and returning `outputs` (name, type, dims). */
  toGraph(outputs: { name: string; type: ElemType; dims: Dim[] }[]): GraphProto {
    return create(GraphProtoSchema, { name: this.name, node: this.nodes, initializer: this.inits, input: this.inputs, output: outputs.map(o => valueInfo(o.name, o.type, o.dims)) })
  }

  /** Number of nodes in this graph (not counting its subgraphs). */
  get nodeCount(): number {
    return this.nodes.length
  }

  fresh(prefix: string): string {
    if (this.root !== this) return this.root.fresh(prefix)
    return `${prefix}_${this.counter++}`
  }

  input(name: string, type: ElemType, dims: Dim[]): string {
    this.inputs.push(valueInfo(name, type, dims))
    return name
  }

  output(name: string, type: ElemType, dims: Dim[]): void {
    this.outputs.push(valueInfo(name, type, dims))
  }

  /** An initializer whose bytes travel as external data under `key`. */
  externalInitializer(name: string, type: ElemType, dims: number[], key: string, data: Uint8Array): string {
    if (this.root !== this) return this.root.externalInitializer(name, type, dims, key, data)
    this.external.set(key, data)
    this.inits.push(externalTensor(name, type, dims, key, 0, data.byteLength))
    return name
  }

  /**
   * An initializer whose bytes onnxruntime reads from a file: `location` is relative to the folder the
   * session is told to resolve external data against (ort.ts GraphBytes.externalFolder), `offset` and
   * `length` in bytes. onnxruntime maps such ranges into memory (mmap, unaligned offsets included) rather
   * than copying them (the data stays shared page cache, unless onnxruntime pre-packs or folds it).
   */
  fileInitializer(name: string, type: ElemType, dims: number[], location: string, offset: number, length: number): string {
    if (this.root !== this) return this.root.fileInitializer(name, type, dims, location, offset, length)
    this.inits.push(externalTensor(name, type, dims, location, offset, length))
    return name
  }

  /**
   * fileInitializer declared in this builder's own graph, also when it is a body (only there, and in
   * bodies nested in it, can it be read). onnxruntime resolves file external data in bodies too, not
   * in-memory external data (externalInitializer), which it looks up for the main graph only.
   */
  bodyFileInitializer(name: string, type: ElemType, dims: number[], location: string, offset: number, length: number): string {
    this.inits.push(externalTensor(name, type, dims, location, offset, length))
    return name
  }

  /** A small initializer stored inside the proto. */
  rawInitializer(name: string, type: ElemType, dims: number[], data: Uint8Array): string {
    if (this.root !== this) return this.root.rawInitializer(name, type, dims, data)
    this.inits.push(create(TensorProtoSchema, { name, dataType: ELEM[type], dims: dims.map(BigInt), rawData: new Uint8Array(data) }))
    return name
  }

  constFloat(values: readonly number[] | Float32Array, dims: number[] = [values.length]): string {
    const data = Float32Array.from(values)
    return this.cached(`f:${dims}:${Array.from(data)}`, name => this.rawInitializer(name, 'float32', dims, new Uint8Array(data.buffer)))
  }

  constInt(values: readonly number[], dims: number[] = [values.length]): string {
    const data = BigInt64Array.from(values.map(BigInt))
    return this.cached(`i:${dims}:${values}`, name => this.rawInitializer(name, 'int64', dims, new Uint8Array(data.buffer)))
  }

  scalarFloat(v: number): string {
    return this.constFloat([v], [])
  }

  scalarInt(v: number): string {
    return this.constInt([v], [])
  }

  private cached(key: string, make: (name: string) => string): string {
    if (this.root !== this) return this.root.cached(key, make)
    const hit = this.constCache.get(key)
    if (hit) return hit
    const name = make(this.fresh('const'))
    this.constCache.set(key, name)
    return name
  }

  /** Adds a node; returns its single output name. */
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, output?: string, domain = ''): string {
    const out = output ?? this.fresh(opType.toLowerCase())
    this.opN(opType, inputs, 1, attrs, [out], domain)
    return out
  }

  /** Adds a node with several outputs. An empty input name marks an omitted optional input. */
  opN(opType: string, inputs: string[], count: number, attrs: Record<string, AttrValue> = {}, outputs?: string[], domain = ''): string[] {
    const outs = outputs ?? Array.from({ length: count }, () => this.fresh(opType.toLowerCase()))
    this.nodes.push(create(NodeProtoSchema, {
      opType, domain, input: inputs, output: outs, name: this.fresh(`n_${opType}`),
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    }))
    return outs
  }

  toBytes(metadata: Record<string, string> = {}): Uint8Array {
    const graph = create(GraphProtoSchema, {
      name: this.name, node: this.nodes, initializer: this.inits, input: this.inputs, output: this.outputs,
    })
    const model = create(ModelProtoSchema, {
      irVersion: 10n,
      producerName: 'moe-harness',
      opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: BigInt(OPSET) })],
      graph,
      metadataProps: Object.entries(metadata).map(([key, value]) => create(StringStringEntryProtoSchema, { key, value })),
    })
    return toBinary(ModelProtoSchema, model)
  }
}

function attribute(name: string, v: AttrValue): AttributeProto {
  if (typeof v === 'string') return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.STRING, s: new TextEncoder().encode(v) })
  if (Array.isArray(v)) return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INTS, ints: v.map(BigInt) })
  if (typeof v === 'object' && '$typeName' in v) return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.GRAPH, g: v })
  if (typeof v === 'object') return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.FLOAT, f: v.f })
  if (Number.isInteger(v)) return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INT, i: BigInt(v) })
  return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.FLOAT, f: v })
}

/** A TensorProto whose `length` bytes are at `offset` of external data `location`. */
function externalTensor(name: string, type: ElemType, dims: number[], location: string, offset: number, length: number): TensorProto {
  return create(TensorProtoSchema, {
    name,
    dataType: ELEM[type],
    dims: dims.map(BigInt),
    dataLocation: TensorProto_DataLocation.EXTERNAL,
    externalData: [
      create(StringStringEntryProtoSchema, { key: 'location', value: location }),
      create(StringStringEntryProtoSchema, { key: 'offset', value: String(offset) }),
      create(StringStringEntryProtoSchema, { key: 'length', value: String(length) }),
    ],
  })
}

function valueInfo(name: string, type: ElemType, dims: Dim[]): ValueInfoProto {
  return create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, {
      value: {
        case: 'tensorType',
        value: {
          elemType: ELEM[type],
          shape: {
            dim: dims.map(d => (typeof d === 'string'
              ? { value: { case: 'dimParam' as const, value: d } }
              : { value: { case: 'dimValue' as const, value: BigInt(d) } })),
          },
        },
      },
    }),
  })
}
