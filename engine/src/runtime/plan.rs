//! Physical planning: from a validated [`Graph`] to subtasks placed on shards.
//!
//! 1. A node is *chained* to its predecessor when the only edge into it is a forward edge on
//!    the predecessor's main output, that is the predecessor's only main output, and both have
//!    the same parallelism. A chain is a head plus everything chained after it.
//! 2. A node with parallelism P has P subtasks; subtask i runs on shard `i % shards`.
//! 3. Every chain head that is not a source gets, per subtask, one bounded channel per input
//!    channel: for each edge into the head, one per upstream subtask (one in all for a forward
//!    edge), each tagged with the operator input (a join's left or right) its edge enters.
//! 4. Every edge that leaves a chain becomes one router per upstream subtask, holding senders
//!    to the downstream subtasks with their input numbers.
//! 5. With checkpoints, each operator subtask stores its state in its shard's RocksDB store
//!    and, when resuming, starts from the state of its key groups, copied into that store;
//!    each source split gets the stored positions; each subtask reports to the coordinator
//!    under a task number. Without checkpoints, state spills to a temporary store per shard.
//!    Every shard's state tables share one memory budget (`state.memory-budget` / shards).

use tokio::sync::mpsc;

use crate::checkpoint::store::SpillStore;
use crate::error::EngineError;
use crate::graph::{Exchange, Graph, GraphInfo, NodeId, NodeKind, OutputPort};
use crate::metrics::{names, Metrics};
use crate::operator::SubtaskContext;
use crate::partition::{KeyGroupRange, KeyHasher};
use crate::source::SplitContext;
use crate::state::table::MemoryBudget;
use crate::state::{OperatorState, StateBackend};
use crate::time::WatermarkGenerator;

use super::durability::Durability;
use super::input::InputGate;
use super::task::{
    guarded, Chain, Control, Inbox, OperatorSlot, Outbox, OutputChannel, Reporter, Router,
    SlotMetrics, SubtaskRunner, Tail, TaskInput,
};
use super::RunOptions;

/// Subtasks grouped by shard, and the control senders of every source subtask.
pub(crate) struct PhysicalPlan {
    pub(crate) shards: Vec<Vec<SubtaskRunner>>,
    /// (task number, control sender) of every source split.
    pub(crate) source_controls: Vec<(usize, mpsc::UnboundedSender<Control>)>,
    /// Number of subtasks (tasks are numbered `0..tasks`).
    pub(crate) tasks: usize,
}

/// The nodes of each chain, in order.
pub(crate) fn chains(graph: &Graph, info: &GraphInfo) -> Vec<Vec<NodeId>> {
    let chained_to_previous = |id: NodeId| -> bool {
        let mut ins = graph.inputs(id);
        let (Some(edge), None) = (ins.next(), ins.next()) else {
            return false;
        };
        edge.exchange == Exchange::Forward
            && edge.port == OutputPort::Main
            && graph
                .outputs(edge.from)
                .filter(|e| e.port == OutputPort::Main)
                .count()
                == 1
            && info.parallelism[edge.from.0] == info.parallelism[id.0]
    };
    let mut chains = Vec::new();
    for &head in &info.order {
        if chained_to_previous(head) {
            continue;
        }
        let mut chain = vec![head];
        let mut current = head;
        loop {
            let next = graph
                .outputs(current)
                .find(|e| e.port == OutputPort::Main && chained_to_previous(e.to));
            match next {
                Some(edge) => {
                    chain.push(edge.to);
                    current = edge.to;
                }
                None => break,
            }
        }
        chains.push(chain);
    }
    chains
}

pub(crate) fn build(
    graph: &Graph,
    info: &GraphInfo,
    options: &RunOptions,
    metrics: &Metrics,
    durability: Option<&Durability>,
) -> Result<PhysicalPlan, EngineError> {
    let chains = chains(graph, info);
    let head_of_chain = |node: NodeId| chains.iter().position(|c| c[0] == node);

    // Step 3: the input channels of every non-source head: per subtask, one bounded channel
    // per (edge, upstream subtask), numbered edge by edge, and the operator input each feeds.
    let mut senders: Vec<Option<Vec<Vec<Outbox>>>> = vec![None; graph.nodes.len()];
    let mut receivers: Vec<Vec<Vec<Inbox>>> = (0..graph.nodes.len()).map(|_| Vec::new()).collect();
    let mut operator_inputs: Vec<Vec<usize>> = vec![Vec::new(); graph.nodes.len()];
    let mut input_base: Vec<usize> = vec![0; graph.edges.len()];
    let mut alignment_groups = super::alignment::AlignmentGroups::default();
    for chain in &chains {
        let head = chain[0];
        if matches!(graph.nodes[head.0].kind, NodeKind::Source { .. }) {
            continue;
        }
        for (index, edge) in graph.edges.iter().enumerate() {
            if edge.to == head {
                input_base[index] = operator_inputs[head.0].len();
                let channels = match edge.exchange {
                    Exchange::Forward => 1,
                    _ => info.parallelism[edge.from.0],
                };
                operator_inputs[head.0].extend(std::iter::repeat_n(edge.input, channels));
            }
        }
        let inputs = operator_inputs[head.0].len();
        // Channel capacity is per subtask: shared by its input channels, at least 2 each.
        let capacity = (options.channel_capacity / inputs.max(1)).max(2);
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..info.parallelism[head.0])
            .map(|_| {
                (0..inputs)
                    .map(|_| mpsc::channel(capacity))
                    .unzip::<_, _, Vec<_>, Vec<_>>()
            })
            .unzip();
        senders[head.0] = Some(txs);
        receivers[head.0] = rxs;
    }

    // Step 4: the routers of one edge for upstream subtask `subtask`.
    let routers_for = |edge_index: usize, subtask: usize| -> Result<Router, EngineError> {
        let edge = &graph.edges[edge_index];
        debug_assert!(head_of_chain(edge.to).is_some());
        let txs = senders[edge.to.0]
            .as_ref()
            .expect("every edge leaving a chain enters a chain head");
        let base = input_base[edge_index];
        let backpressured = metrics.counter(
            &graph.nodes[edge.from.0].name,
            subtask,
            names::BACKPRESSURED_TIME_NS,
        );
        let channel = |target: usize, input: usize| OutputChannel {
            tx: txs[target][input].clone(),
            backpressured: backpressured.clone(),
        };
        let all = || {
            (0..txs.len())
                .map(|t| channel(t, base + subtask))
                .collect::<Vec<_>>()
        };
        Ok(match &edge.exchange {
            Exchange::Forward => Router::Forward(channel(subtask, base)),
            Exchange::Hash(keys) => {
                let schema = match edge.port {
                    OutputPort::Main => &info.schemas[edge.from.0],
                    OutputPort::Late => &info.input_schemas[edge.from.0][0],
                };
                let hasher = KeyHasher::new(schema, keys, options.key_groups)
                    .map_err(|e| EngineError::InvalidGraph(e.to_string()))?;
                Router::Hash {
                    hasher,
                    targets: all(),
                }
            }
            Exchange::Broadcast => Router::Broadcast(all()),
            Exchange::Rebalance => Router::Rebalance {
                targets: all(),
                next: subtask % txs.len(),
            },
        })
    };
    let edges_from = |node: NodeId, port: OutputPort| -> Vec<usize> {
        graph
            .edges
            .iter()
            .enumerate()
            .filter(|(_, e)| e.from == node && e.port == port)
            .map(|(i, _)| i)
            .collect()
    };

    let shards = options.shards.max(1);
    // Per shard: the memory budget of its state tables, and without checkpoints the
    // temporary store they spill to.
    let budgets: Vec<MemoryBudget> = (0..shards)
        .map(|_| MemoryBudget::new(options.state_memory_budget_bytes() / shards))
        .collect();
    let spill: Vec<std::sync::Arc<SpillStore>> = {
        let operators: Vec<String> = graph
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| matches!(n.kind, NodeKind::Operator(_)))
            .map(|(i, _)| info.uids[i].clone())
            .collect();
        (0..shards)
            .map(|shard| {
                SpillStore::new(spill_dir(shard), operators.clone(), budgets[shard].limit())
            })
            .collect()
    };
    let mut plan = PhysicalPlan {
        shards: (0..shards).map(|_| Vec::new()).collect(),
        source_controls: Vec::new(),
        tasks: 0,
    };
    for chain in &chains {
        let head = chain[0];
        let tail_node = *chain.last().expect("chains are not empty");
        let parallelism = info.parallelism[head.0];
        let mut inboxes = std::mem::take(&mut receivers[head.0]).into_iter();
        for subtask in 0..parallelism {
            let task = plan.tasks;
            plan.tasks += 1;
            let context = |node: NodeId| SubtaskContext {
                operator_id: graph.nodes[node.0].name.clone(),
                uid: info.uids[node.0].clone(),
                index: subtask,
                parallelism,
                key_groups: KeyGroupRange::for_subtask(subtask, parallelism, options.key_groups),
                max_key_groups: options.key_groups,
                input_schemas: info.input_schemas[node.0].clone(),
                late_output_connected: graph.outputs(node).any(|e| e.port == OutputPort::Late),
                checkpointing: durability.is_some(),
                metrics: metrics.clone(),
                state_budget: budgets[subtask % shards].clone(),
            };
            let fail =
                |node: NodeId, e| EngineError::operator(&graph.nodes[node.0].name, subtask, e);

            let input = match &graph.nodes[head.0].kind {
                NodeKind::Source { factory, watermark } => {
                    let reader = factory
                        .create_reader(SplitContext {
                            index: subtask,
                            parallelism,
                            source_id: graph.nodes[head.0].name.clone(),
                            metrics: metrics.clone(),
                            restored: durability
                                .and_then(|d| d.restored_positions(&graph.nodes[head.0].name)),
                        })
                        .map_err(|e| fail(head, e))?;
                    let (tx, control) = mpsc::unbounded_channel();
                    plan.source_controls.push((task, tx));
                    TaskInput::Source {
                        name: graph.nodes[head.0].name.clone(),
                        reader,
                        watermarks: watermark.clone().map(WatermarkGenerator::new),
                        idle_timeout: watermark.as_ref().and_then(|w| w.idle_timeout),
                        alignment: watermark
                            .as_ref()
                            .and_then(|w| w.alignment.as_ref())
                            .map(|a| alignment_groups.join(a)),
                        control,
                        rows_out: metrics.counter(
                            &graph.nodes[head.0].name,
                            subtask,
                            names::ROWS_OUT,
                        ),
                    }
                }
                _ => TaskInput::Channel {
                    rx: inboxes.next().ok_or_else(|| {
                        EngineError::InvalidGraph(format!(
                            "'{}' has no input channels for subtask {subtask}",
                            graph.nodes[head.0].name
                        ))
                    })?,
                    gate: InputGate::new(operator_inputs[head.0].clone()),
                    idle: metrics.counter(&graph.nodes[head.0].name, subtask, names::IDLE_TIME_NS),
                },
            };

            let mut operators = Vec::new();
            let mut sink = None;
            for &node in chain {
                match &graph.nodes[node.0].kind {
                    NodeKind::Source { .. } => {}
                    NodeKind::Operator(factory) => {
                        let ctx = context(node);
                        let name = &graph.nodes[node.0].name;
                        let mut operator = guarded(name, subtask, || factory.create(&ctx))?
                            .map_err(|e| fail(node, e))?;
                        let mut state: Box<dyn StateBackend> = match durability {
                            Some(durability) => {
                                Box::new(durability.store(subtask % shards).backend(&ctx.uid))
                            }
                            None => Box::new(spill[subtask % shards].backend(&ctx.uid)),
                        };
                        let restored = match durability {
                            Some(durability) => {
                                durability.restore_into(&ctx.uid, ctx.key_groups, state.as_mut())?
                            }
                            None => false,
                        };
                        if let (true, Some(durability)) = (restored, durability) {
                            let view = OperatorState::new(state.as_mut(), &ctx.uid, ctx.key_groups);
                            // Restored bytes may be damaged or foreign: any failure, a panic
                            // included, names the operator and checkpoint.
                            let reason =
                                match guarded(name, subtask, || operator.restore_state(&view)) {
                                    Ok(Ok(())) => None,
                                    Ok(Err(e)) => Some(e.to_string()),
                                    Err(EngineError::OperatorPanicked { message, .. }) => {
                                        Some(format!("it panicked: {message}"))
                                    }
                                    Err(e) => Some(e.to_string()),
                                };
                            if let Some(reason) = reason {
                                return Err(durability.restore_error(format!(
                                    "operator '{name}' (subtask {subtask}) could not restore its state: {reason}"
                                )));
                            }
                        }
                        let late_routers = edges_from(node, OutputPort::Late)
                            .into_iter()
                            .map(|e| routers_for(e, subtask))
                            .collect::<Result<Vec<_>, _>>()?;
                        let mut slot = OperatorSlot::new(
                            ctx.operator_id.clone(),
                            ctx.uid.clone(),
                            operator,
                            state,
                            ctx.key_groups,
                            SlotMetrics::new(metrics, &ctx.operator_id, subtask),
                        );
                        slot.late_routers = late_routers;
                        if durability.is_some() {
                            slot.spill = Some(Box::new(spill[subtask % shards].backend(&ctx.uid)));
                        }
                        operators.push(slot);
                    }
                    NodeKind::Sink(factory) => {
                        let ctx = context(node);
                        let writer = factory.create_writer(&ctx).map_err(|e| fail(node, e))?;
                        sink = Some(Tail::Sink {
                            rows_written: metrics.counter(
                                &ctx.operator_id,
                                subtask,
                                names::ROWS_WRITTEN,
                            ),
                            name: ctx.operator_id,
                            writer,
                        });
                    }
                }
            }
            let tail = match sink {
                Some(tail) => tail,
                None => Tail::Routers {
                    name: graph.nodes[tail_node.0].name.clone(),
                    routers: edges_from(tail_node, OutputPort::Main)
                        .into_iter()
                        .map(|e| routers_for(e, subtask))
                        .collect::<Result<Vec<_>, _>>()?,
                },
            };
            let name = chain
                .iter()
                .map(|n| graph.nodes[n.0].name.as_str())
                .collect::<Vec<_>>()
                .join(" -> ");
            plan.shards[subtask % shards].push(SubtaskRunner {
                name,
                input,
                chain: Chain {
                    subtask,
                    operators,
                    tail,
                    reporter: durability.map(|d| Reporter {
                        task,
                        events: d.events.clone(),
                    }),
                    source_positions: None,
                    sink_token: None,
                },
            });
        }
    }
    Ok(plan)
}

/// A new directory for a shard's temporary state store (under the system's temporary
/// directory; created only if state spills, removed when the job ends).
fn spill_dir(shard: usize) -> std::path::PathBuf {
    static STORES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let store = STORES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "weir-spill-{}-{store}-shard-{shard}",
        std::process::id()
    ))
}
