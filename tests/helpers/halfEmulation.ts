// Float16 on onnxruntime's CPU provider, rounded as a GPU rounds it: a test aid for half-precision graphs.
//
// The CPU provider has no float16 kernel for most arithmetic nodes; it runs them in float32 between
// inserted Casts (InsertCastTransformer), and RemoveDuplicateCastTransformer then removes the
// float16 -> float32 Cast pairs between two such nodes (float and float16 are one "type group" to it),
// so a chain of float16 nodes is computed in float32 with no rounding in between. A lone data-movement
// node between them does not help either: ForceSingleNodeCPUFloat16ToFloat32 moves an "isolated"
// float16 node to float32 too. Two consecutive float16 data-movement nodes do: measured on
// onnxruntime-node 1.30, (x + 1024) - 1024 in float16 gives x rounded to an integer with
// Reshape(Reshape(.)) between the two nodes, and x itself without.
//
// roundEveryOp rewrites a model so that every arithmetic node with a float16 output is followed by two
// Reshapes to its own shape: every intermediate float16 value is then materialised in float16, as a
// GPU computing in float16 stores it. (Inside a node, the CPU still accumulates in float32, as GPU
// kernels do.)
import assert from 'node:assert/strict'
import { create, fromBinary, toBinary } from '@bufbuild/protobuf'
import { ModelProtoSchema, NodeProtoSchema, type GraphProto, type NodeProto } from 'onnx-buf'

export const FLOAT = 1, FLOAT16 = 10, BFLOAT16 = 16
const BOOL = 9, INT64 = 7

/** Nodes that only move or select values (no rounding to model). */
const DATA_MOVEMENT = new Set(['Reshape', 'Transpose', 'Gather', 'GatherElements', 'Split', 'Concat', 'Slice', 'Unsqueeze', 'Squeeze', 'Expand', 'Identity', 'Cast', 'ScatterND', 'If', 'Shape', 'Size', 'NonZero'])

export interface TypedModel {
  /** Element type of every value (graph inputs, initializers, node outputs, If bodies). */
  types: Map<string, number>
  nodes: { op: string; inputs: string[]; outputs: string[] }[]
}

/**
 * Element types from the ONNX type rules of the ops the scoring graph uses; asserts that the float
 * inputs of every arithmetic node share one type, as onnxruntime's type inference would.
 */
export function typesOf(model: Uint8Array): TypedModel {
  const types = new Map<string, number>()
  const nodes: TypedModel['nodes'] = []
  walkTypes(fromBinary(ModelProtoSchema, model).graph!, types, nodes)
  return { types, nodes }
}

const boolOps = new Set(['Equal', 'Greater', 'GreaterOrEqual', 'Less', 'LessOrEqual', 'And', 'Or', 'Not', 'IsInf', 'IsNaN'])
const sameFloat = new Set(['Add', 'Sub', 'Mul', 'Div', 'MatMul', 'Gemm', 'Clip', 'Concat', 'Max', 'Min'])
const elemOf = (v: { type?: { value: { case?: string; value?: unknown } } }) => (v.type!.value.case === 'tensorType' ? (v.type!.value.value as { elemType: number }).elemType : -1)

function walkTypes(g: GraphProto, types: Map<string, number>, nodes: TypedModel['nodes']): void {
  for (const i of g.input) types.set(i.name, elemOf(i))
  for (const t of g.initializer) types.set(t.name, t.dataType)
  for (const n of g.node) {
    nodes.push({ op: n.opType, inputs: n.input, outputs: n.output })
    const t0 = types.get(n.input[0]!)
    if (sameFloat.has(n.opType)) {
      const floats = n.input.filter(Boolean).map(i => types.get(i)).filter(t => t === FLOAT || t === FLOAT16 || t === BFLOAT16)
      assert.ok(new Set(floats).size <= 1, `${n.opType} ${n.name} mixes element types ${floats}`)
    }
    let out: number[]
    if (n.opType === 'Cast') out = [Number(n.attribute.find(a => a.name === 'to')!.i)]
    else if (n.opType === 'If') {
      for (const a of n.attribute) walkTypes(a.g!, types, nodes)
      out = n.attribute.find(a => a.name === 'then_branch')!.g!.output.map(elemOf)
    } else if (boolOps.has(n.opType)) out = [BOOL]
    else if (['Shape', 'Size', 'NonZero'].includes(n.opType)) out = [INT64]
    else if (n.opType === 'ConstantOfShape') out = [FLOAT]
    else if (n.opType === 'TopK') out = [t0!, INT64]
    else if (n.opType === 'Where') out = [types.get(n.input[1]!)!]
    else out = n.output.map(() => t0!)
    n.output.forEach((o, i) => types.set(o, out[i] ?? out[0]!))
  }
}

/** The model with every float16 arithmetic output materialised in float16 on the CPU provider (see the header). */
export function roundEveryOp(model: Uint8Array): Uint8Array {
  const proto = fromBinary(ModelProtoSchema, model)
  const { types } = typesOf(model)
  let counter = 0
  const rewrite = (g: GraphProto) => {
    const nodes: NodeProto[] = []
    for (const n of g.node) {
      for (const a of n.attribute) if (a.g) rewrite(a.g)
      const rounded = DATA_MOVEMENT.has(n.opType) ? [] : n.output.filter(o => types.get(o) === FLOAT16)
      const raw = new Map(rounded.map(o => [o, `${o}__f32_${counter++}`]))
      n.output = n.output.map(o => raw.get(o) ?? o)
      nodes.push(n)
      for (const [o, r] of raw) {
        const shape = `${r}_shape`, once = `${r}_once`
        nodes.push(node('Shape', [r], shape), node('Reshape', [r, shape], once), node('Reshape', [once, shape], o))
      }
    }
    g.node = nodes
  }
  const node = (opType: string, input: string[], output: string) => create(NodeProtoSchema, { opType, input, output: [output], name: `round_${counter++}` })
  rewrite(proto.graph!)
  return toBinary(ModelProtoSchema, proto)
}
