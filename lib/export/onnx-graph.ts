// A small builder for ONNX graphs: named values, nodes that produce them, and
// initializers (weights and constants), gathered into a GraphProto-shaped object.

import {
  ATTRIBUTE_FLOAT,
  ATTRIBUTE_INT,
  ATTRIBUTE_INTS,
  ONNX_FLOAT,
  ONNX_INT64,
  type OnnxAttribute,
  type OnnxGraph,
  type OnnxNode,
  type OnnxTensor,
  type OnnxValueInfo,
} from './onnx-proto.js';

/** An attribute value: an integer, a list of integers, or a float (tagged, since JS numbers are both). */
export type AttributeValue = { int: number } | { ints: number[] } | { float: number };

export const int = (value: number): AttributeValue => ({ int: value });
export const ints = (values: number[]): AttributeValue => ({ ints: values });

function attribute(name: string, value: AttributeValue): OnnxAttribute {
  if ('int' in value) return { name, type: ATTRIBUTE_INT, i: value.int };
  if ('ints' in value) return { name, type: ATTRIBUTE_INTS, ints: value.ints };
  return { name, type: ATTRIBUTE_FLOAT, f: value.float };
}

/** A dimension of a graph input or output: a fixed size or a named dynamic axis. */
export type Dim = number | string;

export class GraphBuilder {
  private readonly nodes: OnnxNode[] = [];
  private readonly initializers: OnnxTensor[] = [];
  private readonly names = new Set<string>();
  private readonly inputs: OnnxValueInfo[] = [];
  private readonly outputs: OnnxValueInfo[] = [];

  /** Declares a graph input and returns its name. */
  input(name: string, elemType: number, dims: Dim[]): string {
    this.inputs.push(valueInfo(this.claim(name), elemType, dims));
    return name;
  }

  /** Declares the value `name` (a node's output) a graph output. */
  output(name: string, elemType: number, dims: Dim[]): void {
    this.outputs.push(valueInfo(name, elemType, dims));
  }

  /**
   * Adds a node and returns its output's name (`output`, made unique if taken).
   * Every op here has one output.
   */
  node(opType: string, inputs: string[], output: string, attributes: Record<string, AttributeValue> = {}): string {
    const name = this.claim(output);
    this.nodes.push({
      op_type: opType,
      name,
      input: inputs,
      output: [name],
      attribute: Object.entries(attributes).map(([key, value]) => attribute(key, value)),
    });
    return name;
  }

  /** A float32 initializer (a weight or a constant table). */
  floats(name: string, data: Float32Array, dims: number[]): string {
    return this.initializer(name, ONNX_FLOAT, new Uint8Array(data.buffer, data.byteOffset, data.byteLength), dims);
  }

  /** An int64 initializer (shapes, indices, slice bounds). */
  int64s(name: string, values: number[], dims: number[] = [values.length]): string {
    const data = BigInt64Array.from(values, (v) => BigInt(v));
    return this.initializer(name, ONNX_INT64, new Uint8Array(data.buffer), dims);
  }

  private initializer(name: string, dataType: number, bytes: Uint8Array, dims: number[]): string {
    const unique = this.claim(name);
    // raw_data is little-endian, as typed arrays are on every platform Node runs on here.
    this.initializers.push({ name: unique, data_type: dataType, dims, raw_data: bytes });
    return unique;
  }

  private claim(name: string): string {
    let unique = name;
    for (let n = 1; this.names.has(unique); n++) unique = `${name}_${n}`;
    this.names.add(unique);
    return unique;
  }

  build(name: string): OnnxGraph {
    return { name, node: this.nodes, initializer: this.initializers, input: this.inputs, output: this.outputs };
  }
}

function valueInfo(name: string, elemType: number, dims: Dim[]): OnnxValueInfo {
  const dim = dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d }));
  return { name, type: { tensor_type: { elem_type: elemType, shape: { dim } } } };
}
