// A restricted unpickler for the data.pkl of a torch.save checkpoint.
//
// A pickle is a program: its GLOBAL and REDUCE opcodes import and call any Python
// function, which is how a malicious pytorch_model.bin runs os.system. This reader
// executes nothing. It knows the few globals a state dict names (OrderedDict, the
// tensor rebuild functions, the storage types) and builds plain JS values for them;
// any other global is refused by name, before anything else is read. Only the
// opcodes a state dict uses are read (torch.save writes protocol 2); instance
// creation (INST, OBJ, NEWOBJ) and extension registries are refused too.

import type { SafetensorsDtype } from './safetensors.js';

export class TorchPickleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TorchPickleError';
  }
}

/** A storage named by BINPERSID: its bytes are the archive entry data/<key>. */
export interface StorageRef {
  kind: 'storage';
  key: string;
  dtype: SafetensorsDtype;
  /** Elements the pickle says the storage holds. */
  numel: number;
}

/** A tensor as _rebuild_tensor_v2 describes it: a strided view into a storage. */
export interface TensorRef {
  kind: 'tensor';
  storage: StorageRef;
  /** In elements. */
  offset: number;
  shape: number[];
  /** In elements, one per dimension. */
  stride: number[];
}

/** One of the globals below, named by GLOBAL or STACK_GLOBAL. */
interface Global {
  kind: 'global';
  name: string;
}

export type PickleValue =
  | null
  | boolean
  | number
  | string
  | Uint8Array
  | PickleValue[]
  | Map<PickleValue, PickleValue>
  | Global
  | StorageRef
  | TensorRef;

/** torch.save names a storage by its legacy typed class; these are the element types. */
const STORAGE_TYPES: Record<string, SafetensorsDtype> = {
  'torch.FloatStorage': 'F32',
  'torch.HalfStorage': 'F16',
  'torch.BFloat16Storage': 'BF16',
  'torch.DoubleStorage': 'F64',
  'torch.LongStorage': 'I64',
  'torch.IntStorage': 'I32',
  'torch.ShortStorage': 'I16',
  'torch.CharStorage': 'I8',
  'torch.ByteStorage': 'U8',
  'torch.BoolStorage': 'BOOL',
};
const ORDERED_DICT = 'collections.OrderedDict';
const REBUILD_TENSOR = 'torch._utils._rebuild_tensor_v2';
const REBUILD_PARAMETER = 'torch._utils._rebuild_parameter';
const ALLOWED_GLOBALS = new Set([ORDERED_DICT, REBUILD_TENSOR, REBUILD_PARAMETER, ...Object.keys(STORAGE_TYPES)]);

/** A mark on the stack (MARK … TUPLE/LIST/DICT/SETITEMS/APPENDS). */
const MARK = Symbol('mark');
type StackItem = PickleValue | typeof MARK;

const OP = {
  MARK: 0x28, STOP: 0x2e, POP: 0x30, POP_MARK: 0x31, DUP: 0x32,
  BINFLOAT: 0x47, BININT: 0x4a, BININT1: 0x4b, BININT2: 0x4d, NONE: 0x4e,
  BINPERSID: 0x51, REDUCE: 0x52, BINSTRING: 0x54, SHORT_BINSTRING: 0x55, BINUNICODE: 0x58,
  BINBYTES: 0x42, SHORT_BINBYTES: 0x43,
  EMPTY_LIST: 0x5d, APPEND: 0x61, BUILD: 0x62, GLOBAL: 0x63, DICT: 0x64, APPENDS: 0x65,
  BINGET: 0x68, LONG_BINGET: 0x6a, LIST: 0x6c, BINPUT: 0x71, LONG_BINPUT: 0x72,
  SETITEM: 0x73, TUPLE: 0x74, SETITEMS: 0x75, EMPTY_DICT: 0x7d, EMPTY_TUPLE: 0x29,
  PROTO: 0x80, TUPLE1: 0x85, TUPLE2: 0x86, TUPLE3: 0x87, NEWTRUE: 0x88, NEWFALSE: 0x89,
  LONG1: 0x8a, SHORT_BINUNICODE: 0x8c, BINUNICODE8: 0x8d, STACK_GLOBAL: 0x93, MEMOIZE: 0x94, FRAME: 0x95,
} as const;
const OP_NAMES = new Map<number, string>(Object.entries(OP).map(([name, code]) => [code, name]));

/**
 * The value a torch.save pickle describes. `source` names the file in errors.
 * Storages come back as StorageRef and tensors as TensorRef: the bytes are the
 * caller's to find in the archive.
 */
export function unpickleStateDict(bytes: Uint8Array, source: string): PickleValue {
  const fail = (problem: string): never => {
    throw new TorchPickleError(`${source}: ${problem}`);
  };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  let pos = 0;
  const stack: StackItem[] = [];
  const memo = new Map<number, PickleValue>();

  const need = (n: number): number => {
    if (pos + n > bytes.length) fail(`the pickle data.pkl ends early (at byte ${bytes.length}, ${n} more expected)`);
    const at = pos;
    pos += n;
    return at;
  };
  const u8 = (): number => bytes[need(1)]!;
  const u32 = (): number => view.getUint32(need(4), true);
  const u64 = (): number => Number(view.getBigUint64(need(8), true));
  const raw = (n: number): Uint8Array => bytes.subarray(need(n), pos);
  const text = (n: number): string => {
    const encoded = raw(n);
    try {
      return utf8.decode(encoded);
    } catch {
      return fail(`invalid UTF-8 in a string at byte ${pos - n}`);
    }
  };
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) fail('the pickle data.pkl ends inside a GLOBAL name');
    return text(end - pos + 1).slice(0, -1);
  };
  const pop = (): PickleValue => {
    const item = stack.pop();
    if (item === undefined || item === MARK) return fail(`the pickle pops an empty stack at byte ${pos - 1}`);
    return item;
  };
  const top = (): PickleValue => {
    const item = stack[stack.length - 1];
    if (item === undefined || item === MARK) return fail(`the pickle reads an empty stack at byte ${pos - 1}`);
    return item;
  };
  /** The items above the topmost mark, which is removed. */
  const popToMark = (): PickleValue[] => {
    const at = stack.lastIndexOf(MARK);
    if (at < 0) fail(`the pickle has no MARK for the opcode at byte ${pos - 1}`);
    const items = stack.splice(at) as PickleValue[];
    return items.slice(1);
  };
  const global = (module: string, name: string): Global => {
    const qualified = `${module}.${name}`;
    if (!ALLOWED_GLOBALS.has(qualified)) fail(`refuses to load the global ${qualified} (only tensors and dicts are read)`);
    return { kind: 'global', name: qualified };
  };
  const setItems = (dict: PickleValue, items: PickleValue[]): void => {
    if (!(dict instanceof Map)) fail(`the pickle sets items on a ${describe(dict)}, not a dict`);
    for (let i = 0; i + 1 < items.length; i += 2) (dict as Map<PickleValue, PickleValue>).set(items[i]!, items[i + 1]!);
  };
  const appendItems = (list: PickleValue, items: PickleValue[]): void => {
    if (!Array.isArray(list)) fail(`the pickle appends to a ${describe(list)}, not a list`);
    (list as PickleValue[]).push(...items);
  };
  const memoGet = (index: number): PickleValue => {
    if (!memo.has(index)) fail(`the pickle reads memo entry ${index}, which was never stored`);
    return memo.get(index)!;
  };

  for (;;) {
    const opAt = pos;
    const op = u8();
    switch (op) {
      case OP.PROTO: u8(); break;
      case OP.FRAME: u64(); break;
      case OP.STOP: return pop();
      case OP.MARK: stack.push(MARK); break;
      case OP.POP: pop(); break;
      case OP.POP_MARK: popToMark(); break;
      case OP.DUP: stack.push(top()); break;
      case OP.NONE: stack.push(null); break;
      case OP.NEWTRUE: stack.push(true); break;
      case OP.NEWFALSE: stack.push(false); break;
      case OP.BININT: stack.push(view.getInt32(need(4), true)); break;
      case OP.BININT1: stack.push(u8()); break;
      case OP.BININT2: stack.push(view.getUint16(need(2), true)); break;
      case OP.LONG1: stack.push(littleEndianSigned(raw(u8()), fail)); break;
      case OP.BINFLOAT: stack.push(view.getFloat64(need(8), false)); break;
      case OP.SHORT_BINUNICODE: stack.push(text(u8())); break;
      case OP.BINUNICODE: stack.push(text(u32())); break;
      case OP.BINUNICODE8: stack.push(text(u64())); break;
      case OP.SHORT_BINSTRING: stack.push(text(u8())); break;
      case OP.BINSTRING: stack.push(text(u32())); break;
      case OP.SHORT_BINBYTES: stack.push(raw(u8())); break;
      case OP.BINBYTES: stack.push(raw(u32())); break;
      case OP.EMPTY_DICT: stack.push(new Map()); break;
      case OP.EMPTY_LIST: stack.push([]); break;
      case OP.EMPTY_TUPLE: stack.push([]); break;
      case OP.TUPLE: case OP.LIST: stack.push(popToMark()); break;
      case OP.TUPLE1: stack.push([pop()]); break;
      case OP.TUPLE2: { const b = pop(); stack.push([pop(), b]); break; }
      case OP.TUPLE3: { const c = pop(); const b = pop(); stack.push([pop(), b, c]); break; }
      case OP.DICT: { const dict = new Map<PickleValue, PickleValue>(); setItems(dict, popToMark()); stack.push(dict); break; }
      case OP.SETITEM: { const value = pop(); const key = pop(); setItems(top(), [key, value]); break; }
      case OP.SETITEMS: { const items = popToMark(); setItems(top(), items); break; }
      case OP.APPEND: { const item = pop(); appendItems(top(), [item]); break; }
      case OP.APPENDS: { const items = popToMark(); appendItems(top(), items); break; }
      case OP.BINPUT: memo.set(u8(), top()); break;
      case OP.LONG_BINPUT: memo.set(u32(), top()); break;
      case OP.MEMOIZE: memo.set(memo.size, top()); break;
      case OP.BINGET: stack.push(memoGet(u8())); break;
      case OP.LONG_BINGET: stack.push(memoGet(u32())); break;
      case OP.GLOBAL: { const module = line(); stack.push(global(module, line())); break; }
      case OP.STACK_GLOBAL: {
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail(`STACK_GLOBAL at byte ${opAt} without a module and a name`);
        stack.push(global(module as string, name as string));
        break;
      }
      case OP.BINPERSID: stack.push(persistentStorage(pop(), fail)); break;
      case OP.REDUCE: { const args = pop(); stack.push(call(pop(), args, fail)); break; }
      case OP.BUILD: {
        // OrderedDict state: state_dict()'s _metadata attribute (module versions), not a weight.
        const state = pop();
        if (!(top() instanceof Map) || !(state instanceof Map || state === null)) fail(`BUILD at byte ${opAt} on a ${describe(top())}: only a state dict's metadata is read`);
        break;
      }
      default:
        fail(`opcode ${OP_NAMES.get(op) ?? `0x${op.toString(16).padStart(2, '0')}`} at byte ${opAt} is not read (a state dict does not use it)`);
    }
  }
}

/** What REDUCE does with the globals above: build a value, never call Python. */
function call(callable: PickleValue, args: PickleValue, fail: (problem: string) => never): PickleValue {
  if (!isGlobal(callable)) return fail(`REDUCE calls a ${describe(callable)}, not a global`);
  if (!Array.isArray(args)) return fail(`REDUCE calls ${callable.name} with a ${describe(args)}, not an argument tuple`);
  switch (callable.name) {
    case ORDERED_DICT:
      if (args.length !== 0) fail(`${ORDERED_DICT} is called with ${args.length} argument(s); a state dict calls it with none`);
      return new Map();
    case REBUILD_TENSOR: {
      // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      const [storage, offset, shape, stride] = args;
      if (!isStorage(storage) || !isCount(offset) || !isCounts(shape) || !isCounts(stride) || shape.length !== stride.length) {
        return fail(`${REBUILD_TENSOR} is called with arguments that are not (storage, offset, size, stride, …)`);
      }
      return { kind: 'tensor', storage, offset, shape, stride };
    }
    case REBUILD_PARAMETER: {
      // _rebuild_parameter(data, requires_grad, backward_hooks): a Parameter is its tensor here.
      const [data] = args;
      if (!isTensor(data)) return fail(`${REBUILD_PARAMETER} is called on a ${describe(data ?? null)}, not a tensor`);
      return data;
    }
    default:
      return fail(`REDUCE calls ${callable.name}, which a state dict only names as a storage type`);
  }
}

/** persistent_load for ('storage', <storage type>, key, location, numel). */
function persistentStorage(id: PickleValue, fail: (problem: string) => never): StorageRef {
  if (!Array.isArray(id) || id[0] !== 'storage' || id.length !== 5) return fail(`a persistent id that is not ('storage', type, key, location, numel): ${describe(id)}`);
  const [, type, key, , numel] = id;
  const dtype = isGlobal(type) ? STORAGE_TYPES[type.name] : undefined;
  if (dtype === undefined) return fail(`a storage of type ${isGlobal(type) ? type.name : describe(type ?? null)}, which is not a storage type`);
  if (typeof key !== 'string' || !/^[0-9A-Za-z_]+$/.test(key)) return fail(`a storage key ${JSON.stringify(key)} that is not a plain name`);
  if (!isCount(numel)) return fail(`storage ${key} with an element count that is not a count`);
  return { kind: 'storage', key, dtype, numel };
}

function littleEndianSigned(digits: Uint8Array, fail: (problem: string) => never): number {
  let value = 0n;
  for (let i = digits.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(digits[i]!);
  if (digits.length > 0 && digits[digits.length - 1]! >= 0x80) value -= 1n << BigInt(8 * digits.length);
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) fail(`an integer too large to read (${value})`);
  return Number(value);
}

function isGlobal(value: PickleValue | undefined): value is Global {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Map) && !(value instanceof Uint8Array) && value.kind === 'global';
}
function isStorage(value: PickleValue | undefined): value is StorageRef {
  return typeof value === 'object' && value !== null && (value as { kind?: string }).kind === 'storage';
}
export function isTensor(value: PickleValue | undefined): value is TensorRef {
  return typeof value === 'object' && value !== null && (value as { kind?: string }).kind === 'tensor';
}
function isCount(value: PickleValue | undefined): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0;
}
function isCounts(value: PickleValue | undefined): value is number[] {
  return Array.isArray(value) && value.every((v) => isCount(v));
}

/** A value's kind in words, for errors. */
export function describe(value: PickleValue): string {
  if (value === null) return 'None';
  if (Array.isArray(value)) return 'tuple or list';
  if (value instanceof Map) return 'dict';
  if (value instanceof Uint8Array) return 'bytes';
  if (typeof value === 'object') return value.kind === 'global' ? `global ${value.name}` : value.kind;
  return typeof value;
}
