"""Making samples: semantic IDs (synth.sids), the teacher engine (synth.teacher) and synthesis tasks
(synth.tasks, prompt templates in synth/prompts/)."""
